"""codeflow's optional native extension (``native/``, Rust), when it is built.

``scripts/bootstrap`` builds it where cargo is installed. Everything it does has a Python
twin that tests hold it to, so without it codeflow works the same, more slowly;
``CODEFLOW_NATIVE=0`` turns it off.
"""

from __future__ import annotations

from config.native import native_enabled

__all__ = ["codeflow_native", "native_available", "native_built"]

try:
    import codeflow_native
except ImportError:  # not built: the pure-Python paths serve
    codeflow_native = None  # type: ignore[assignment]


def native_built() -> bool:
    """Whether the extension is installed."""
    return codeflow_native is not None


def native_available() -> bool:
    """Whether the extension is installed and not turned off with ``CODEFLOW_NATIVE=0``."""
    return native_built() and native_enabled()

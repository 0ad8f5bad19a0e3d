"""codeflow configuration: one Settings object, read once at the edges.

The settings model (pydantic) loads on first use of one of its names, so that a light
module such as :mod:`config.native`, which the chunk workers import, does not pull it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from config.errors import SettingsError

if TYPE_CHECKING:
    from config.settings import Settings, load_settings, with_backends

__all__ = ["Settings", "SettingsError", "load_settings", "with_backends"]
_LAZY = frozenset({"Settings", "load_settings", "with_backends"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from config import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'config' has no attribute {name!r}")

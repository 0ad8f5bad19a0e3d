"""Settings of native code: codeflow's own extension (on unless ``CODEFLOW_NATIVE=0``), and
native libraries' settings that can only be given before they load.

OpenBLAS (numpy's BLAS) keeps its idle threads spinning for 2^28 cycles after every
product. Vector search makes one matrix-vector product per query, so a long-lived searcher
(``codeflow serve``) would burn a core for a tenth of a second after each search, next to
its WebSocket fan-out and LanceDB's own threads. The timeout below stops the spin.
"""

from __future__ import annotations

import os

#: OpenBLAS's idle-thread spin, as a power of two of CPU cycles (its minimum, 4).
BLAS_THREAD_TIMEOUT = "4"


def quiet_blas_threads() -> None:
    """Have OpenBLAS park its threads at once after a product. Call it before numpy is
    imported (the entry points do); a value already in the environment wins."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)


def native_enabled() -> bool:
    """Whether codeflow may use its native extension (``CODEFLOW_NATIVE=0`` turns it off).
    Read at each call: the benchmarks switch it within one process."""
    return os.environ.get("CODEFLOW_NATIVE", "1") != "0"

"""Keep Python's full garbage collections off the objects that live as long as the process.

Once its imports are done, a flow's process tracks hundreds of thousands of objects (modules,
Prefect's and pydantic's classes, functions, descriptors), none of which will ever be garbage.
Python's full (generation 2) collection walks every one of them, inside whatever run triggers
it: long enough to double a no-op re-index (``benchmarks/vectorize``). :func:`freeze_startup`
moves what is alive at the first run to the interpreter's permanent generation, which
collections skip (``gc.freeze``), once per process. Frozen objects are still freed by reference
counting; only a cycle among them would outlive its use, and startup objects (modules, classes)
are not released anyway.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = threading.Event()


def freeze_startup() -> bool:
    """Freeze every object alive now, the first time this process calls it; returns
    whether this call did (later calls return False and change nothing)."""
    with _lock:
        if _frozen.is_set():
            return False
        gc.freeze()
        _frozen.set()
        return True

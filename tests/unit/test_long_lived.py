"""Freezing the process's startup objects out of full garbage collections, once."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from tasks.pipeline.long_lived import freeze_startup

before = gc.get_freeze_count()
first, second = freeze_startup(), freeze_startup()
frozen = gc.get_freeze_count()
gc.disable()  # no automatic collection: the explicit one below must find the cycles
for _ in range(1000):  # cycles made after the freeze are still collected
    cycle = []
    cycle.append(cycle)
del cycle
print(before, first, second, frozen > 1000, gc.collect() >= 1000)
"""


def test_the_first_call_freezes_what_is_alive_and_later_calls_change_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", "True", "False", "True", "True"]

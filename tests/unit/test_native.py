"""Native-library settings the entry points apply before numpy loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config.native import BLAS_THREAD_TIMEOUT, quiet_blas_threads


def test_the_blas_spin_is_shortened_unless_already_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    quiet_blas_threads()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == BLAS_THREAD_TIMEOUT
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")
    quiet_blas_threads()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "20"


def test_the_command_line_sets_it_before_numpy_loads() -> None:
    """``codeflow`` and ``python -m server`` import numpy lazily, after ``main`` set it."""
    probe = (
        "import sys, flows.cli.commands, server.__main__\n"
        "assert 'numpy' not in sys.modules\n"
        "flows.cli.commands.main(['status', '/nonexistent'])\n"
        "import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == BLAS_THREAD_TIMEOUT

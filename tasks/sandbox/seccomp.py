"""codeflow's seccomp profile for the sandbox (``seccomp.json``, written by
``scripts/seccomp-profile``): which system calls an untrusted Python program may make.

It is stricter than Docker's default: an allowlist of the kernel's calls minus ptrace,
``process_vm_*``, keyrings, BPF, perf, userfaultfd, mounts, namespaces, module loading,
kexec and the rest a Python program has no use for; ``clone`` without namespace flags only.
Every container gets it; the engine's record of what it applied is checked against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

PREFIX = "seccomp="


@cache
def profile() -> dict[str, Any]:
    """The profile, as shipped with the package."""
    text = resources.files("tasks.sandbox").joinpath("seccomp.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def identity() -> dict[str, Any]:
    """The profile's name and version, as results record them."""
    return dict(profile()["codeflow"])


def security_option() -> str:
    """The ``--security-opt`` value that applies the profile."""
    return PREFIX + json.dumps(profile(), separators=(",", ":"))


def applied(security_options: Iterable[str]) -> dict[str, Any] | None:
    """The identity of the codeflow profile an engine applied (from an inspected
    container's ``SecurityOpt``), or None: no profile, Docker's default, or another one."""
    for option in security_options:
        if option.startswith(PREFIX):
            try:
                found = json.loads(option[len(PREFIX) :])
            except ValueError:
                return None
            return identity() if found == profile() else None
    return None

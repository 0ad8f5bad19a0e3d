"""What the kernel applied to a running container, read from the host: its cgroup's limits
and usage (cgroup v1 or v2) and its first process's security state (``/proc/PID/status``).

The engine's own record (``docker inspect``) says what was asked for; this says what is in
force. :func:`live_mismatches` compares both with the limits a run asked for, before the
program starts; :meth:`LiveContainer.usage` reads what the program used, after it ends and
before the container goes (its cgroup goes with it).

>>> live = LiveContainer(pid=4242)                 # doctest: +SKIP
>>> live.limits()["memory"], live.security()["seccomp"]  # doctest: +SKIP
(536870912, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.sandbox.models import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
#: What cgroup v2 writes for "no limit".
UNLIMITED = "max"


@dataclass
class LiveContainer:
    """The container whose first process is ``pid`` (``State.Pid`` of ``docker inspect``)."""

    pid: int
    proc: Path = PROC
    root: Path = CGROUP_ROOT
    _paths: dict[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> dict[str, str]:
        """Controller -> the cgroup path of the process (``""`` is the v2 hierarchy)."""
        if not self._paths:
            for line in (self.proc / str(self.pid) / "cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    self._paths[name.removeprefix("name=")] = path
        return self._paths

    @property
    def version(self) -> int:
        return 1 if "memory" in self.paths else 2

    def _read(self, controller: str, name: str) -> str | None:
        base = self.root / (controller if self.version == 1 else "")
        path = base / self.paths.get(controller if self.version == 1 else "", "").lstrip("/")
        try:
            return (path / name).read_text().strip()
        except OSError:
            return None

    def limits(self) -> dict[str, int | None]:
        """memory, memory + swap, pids, CPU quota and period (None: not limited/not found)."""
        if self.version == 1:
            return {
                "memory": _int(self._read("memory", "memory.limit_in_bytes")),
                "memory_swap": _int(self._read("memory", "memory.memsw.limit_in_bytes")),
                "pids": _int(self._read("pids", "pids.max")),
                "cpu_quota": _int(self._read("cpu", "cpu.cfs_quota_us")),
                "cpu_period": _int(self._read("cpu", "cpu.cfs_period_us")),
            }
        quota, _, period = (self._read("", "cpu.max") or "").partition(" ")
        memory = _int(self._read("", "memory.max"))
        swap = _int(self._read("", "memory.swap.max"))
        return {
            "memory": memory,
            "memory_swap": None if memory is None or swap is None else memory + swap,
            "pids": _int(self._read("", "pids.max")),
            "cpu_quota": _int(quota),
            "cpu_period": _int(period),
        }

    def security(self) -> dict[str, int | None]:
        """seccomp mode (2: filtered), no_new_privs (1: set) and effective capabilities."""
        fields: dict[str, str] = {}
        for line in (self.proc / str(self.pid) / "status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return {
            "seccomp": _int(fields.get("Seccomp")),
            "no_new_privs": _int(fields.get("NoNewPrivs")),
            "capabilities": int(fields["CapEff"], 16) if "CapEff" in fields else None,
        }

    def tasks(self) -> int:
        """How many tasks (processes and threads) the container has now."""
        controller = "pids" if self.version == 1 else ""
        return _int(self._read(controller, "pids.current")) or 0

    def usage(self) -> dict[str, int | float | None]:
        """What the container used so far: peak memory, CPU seconds, processes (the peak
        where the kernel keeps one, else the current count) and bytes in its tmpfs."""
        if self.version == 1:
            cpu_ns = _int(self._read("cpuacct", "cpuacct.usage"))
            stat = _stat(self._read("memory", "memory.stat"))
            return {
                "peak_memory_bytes": _int(self._read("memory", "memory.max_usage_in_bytes")),
                "cpu_seconds": None if cpu_ns is None else round(cpu_ns / 1e9, 4),
                "processes": _int(self._read("pids", "pids.current")),
                "bytes_written": stat.get("total_shmem", stat.get("shmem")),
            }
        cpu = _stat(self._read("", "cpu.stat"))
        peak = _int(self._read("", "pids.peak"))
        return {
            "peak_memory_bytes": _int(self._read("", "memory.peak")),
            "cpu_seconds": round(cpu["usage_usec"] / 1e6, 4) if "usage_usec" in cpu else None,
            "processes": peak if peak is not None else _int(self._read("", "pids.current")),
            "bytes_written": _stat(self._read("", "memory.stat")).get("shmem"),
        }


def live_mismatches(
    limits_seen: dict[str, int | None],
    security_seen: dict[str, int | None],
    wanted: Limits,
    *,
    check_capabilities: bool = True,
) -> list[str]:
    """Every limit or security setting not in force, as readable lines. Capabilities are
    checked where the first process is the program's (runc), not gVisor's own sandbox."""
    quota, period = limits_seen.get("cpu_quota"), limits_seen.get("cpu_period")
    cpus = None if not quota or not period or quota < 0 else quota / period
    checks: list[tuple[str, object, object]] = [
        ("memory limit", limits_seen.get("memory"), wanted.memory_bytes),
        ("pids limit", limits_seen.get("pids"), wanted.pids),
        ("CPU quota", None if cpus is None else round(cpus, 3), round(wanted.cpus, 3)),
        ("seccomp mode", security_seen.get("seccomp"), 2),
        ("no_new_privs", security_seen.get("no_new_privs"), 1),
    ]
    swap = limits_seen.get("memory_swap")
    if swap is not None:  # absent without swap accounting, where the engine refuses to
        # create the container (with a warning) instead
        checks.append(("memory + swap limit", swap, wanted.memory_bytes))
    if check_capabilities:
        checks.append(("effective capabilities", security_seen.get("capabilities"), 0))
    return [
        f"live {name} is {got!r}, expected {want!r}" for name, got, want in checks if got != want
    ]


def _int(text: str | None) -> int | None:
    if text is None or text == UNLIMITED:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat(text: str | None) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        number = _int(value)
        if number is not None:
            found[key] = number
    return found

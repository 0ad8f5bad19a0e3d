"""Reading what the kernel applied to a container: cgroup v1 and v2 trees, /proc status,
and the comparison with what a run asked for (real files in a temporary tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.sandbox import seccomp
from tasks.sandbox.live_container import LiveContainer, live_mismatches
from tasks.sandbox.models import Limits

PID, CID = 4242, "docker/abc123"
STATUS = "Name:\tpython3\nNoNewPrivs:\t1\nSeccomp:\t2\nCapEff:\t0000000000000000\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(tmp_path: Path, *, memory: int, pids: str = "64") -> LiveContainer:
    controllers = ["memory", "pids", "cpu", "cpuacct"]
    cgroup = "".join(f"{i}:{c}:/{CID}\n" for i, c in enumerate(controllers, 1))
    write(tmp_path / "proc" / str(PID) / "cgroup", cgroup + "0::/\n")
    write(tmp_path / "proc" / str(PID) / "status", STATUS)
    root = tmp_path / "sys"
    write(root / "memory" / CID / "memory.limit_in_bytes", f"{memory}\n")
    write(root / "memory" / CID / "memory.memsw.limit_in_bytes", f"{memory}\n")
    write(root / "memory" / CID / "memory.max_usage_in_bytes", "104857600\n")
    write(root / "memory" / CID / "memory.stat", "cache 0\nshmem 4096\ntotal_shmem 8192\n")
    write(root / "pids" / CID / "pids.max", f"{pids}\n")
    write(root / "pids" / CID / "pids.current", "5\n")
    write(root / "cpu" / CID / "cpu.cfs_quota_us", "50000\n")
    write(root / "cpu" / CID / "cpu.cfs_period_us", "100000\n")
    write(root / "cpuacct" / CID / "cpuacct.usage", "250000000\n")
    return LiveContainer(PID, proc=tmp_path / "proc", root=root)


def v2_tree(tmp_path: Path) -> LiveContainer:
    write(tmp_path / "proc" / str(PID) / "cgroup", f"0::/{CID}\n")
    write(tmp_path / "proc" / str(PID) / "status", STATUS)
    base = tmp_path / "sys" / CID
    for name, value in {
        "memory.max": "536870912", "memory.swap.max": "0", "pids.max": "64",
        "cpu.max": "50000 100000", "memory.peak": "209715200", "pids.peak": "9",
        "cpu.stat": "usage_usec 1500000\nuser_usec 1000000\n", "memory.stat": "shmem 1024\n",
    }.items():  # fmt: skip
        write(base / name, value + "\n")
    return LiveContainer(PID, proc=tmp_path / "proc", root=tmp_path / "sys")


def test_cgroup_v1_limits_security_and_usage(tmp_path: Path) -> None:
    live = v1_tree(tmp_path, memory=512 * 1024 * 1024)
    assert live.version == 1 and live.tasks() == 5
    assert live_mismatches(live.limits(), live.security(), Limits()) == []
    assert live.usage() == {
        "peak_memory_bytes": 104857600,
        "cpu_seconds": 0.25,
        "processes": 5,
        "bytes_written": 8192,
    }


def test_cgroup_v2_limits_and_usage(tmp_path: Path) -> None:
    live = v2_tree(tmp_path)
    assert live.version == 2
    assert live_mismatches(live.limits(), live.security(), Limits()) == []
    usage = live.usage()
    assert (usage["peak_memory_bytes"], usage["cpu_seconds"], usage["processes"]) == (
        209715200,
        1.5,
        9,
    )


def test_what_is_not_in_force_is_named(tmp_path: Path) -> None:
    live = v1_tree(tmp_path, memory=1 << 30, pids="max")
    problems = live_mismatches(live.limits(), {"seccomp": 0, "no_new_privs": 0}, Limits())
    text = "; ".join(problems)
    for part in ("memory limit", "pids limit is None", "seccomp mode is 0", "no_new_privs"):
        assert part in text
    assert "effective capabilities is None" in text


def test_capabilities_are_not_checked_under_gvisor(tmp_path: Path) -> None:
    live = v1_tree(tmp_path, memory=512 * 1024 * 1024)
    security = {**live.security(), "capabilities": 0x240000}  # the sandbox's own
    assert live_mismatches(live.limits(), security, Limits()) != []
    assert live_mismatches(live.limits(), security, Limits(), check_capabilities=False) == []


def test_the_seccomp_profile_is_recognised_only_when_it_is_ours() -> None:
    ours = seccomp.security_option()
    assert seccomp.applied(["no-new-privileges", ours]) == {"name": "codeflow-python", "version": 1}
    tampered = ours.replace('"read",', '"read","ptrace",', 1)  # ptrace let back in
    assert tampered != ours
    assert seccomp.applied([tampered]) is None
    assert seccomp.applied(["no-new-privileges"]) is None
    assert seccomp.applied(["seccomp=unconfined"]) is None


@pytest.mark.parametrize("denied", ["ptrace", "process_vm_readv", "bpf", "mount", "unshare"])
def test_the_profile_leaves_out_what_python_does_not_need(denied: str) -> None:
    allowed = seccomp.profile()["syscalls"][0]["names"]
    assert denied not in allowed and "read" in allowed and "execve" in allowed

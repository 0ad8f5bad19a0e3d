"""Pure parts of the sandbox: limits, requests, classification, the wire format, image helpers."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from tasks.sandbox.image import find_mirror, recipe_hash, strip_setid_bits
from tasks.sandbox.models import (
    ExecutionRequest,
    ExecutionResult,
    Limits,
    Violation,
    classify_outcome,
)
from tasks.sandbox.wire import (
    OutputCollector,
    done_marker,
    encode_payload,
    expected_tmpfs,
    limit_mismatches,
)


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    ("signals", "status"),
    [
        ({"exit_code": 0}, "ok"),
        ({"exit_code": 1}, "error"),
        ({"exit_code": 137, "oom_killed": True, "timed_out": True}, "oom"),
        ({"exit_code": 137, "timed_out": True, "truncated": True}, "timeout"),
        ({"exit_code": 0, "truncated": True}, "output_limit"),
        ({"exit_code": None, "timed_out": True}, "timeout"),
    ],
)
def test_classification_weighs_signals_in_order(signals: dict[str, Any], status: str) -> None:
    flags = {"oom_killed": False, "timed_out": False, "truncated": False} | signals
    assert classify_outcome(**flags) == status


def test_limits_reject_out_of_range_values() -> None:
    with pytest.raises(ConfigError, match="memory_mb"):
        Limits(memory_mb=1)
    assert Limits(memory_mb=256).memory_bytes == 256 * 1024 * 1024
    assert Limits(cpus=0.5).nano_cpus == 500_000_000


BAD_NAMES = ["/etc/passwd", "../x", "a/../../x", "a//b", "", "main.py", "a\\b", "./x"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_input_file_names_must_stay_inside_the_work_directory(name: str) -> None:
    with pytest.raises(ConfigError):
        ExecutionRequest("pass", files={name: b""})


def test_content_hash_covers_code_inputs_image_and_limits() -> None:
    base = ExecutionRequest("print(1)", stdin=b"a", files={"f.txt": b"x"})
    same = ExecutionRequest("print(1)", stdin=b"a", files={"f.txt": b"x"})
    assert base.content_hash("img") == same.content_hash("img")
    variants = [
        ExecutionRequest("print(2)", stdin=b"a", files={"f.txt": b"x"}),
        ExecutionRequest("print(1)", stdin=b"b", files={"f.txt": b"x"}),
        ExecutionRequest("print(1)", stdin=b"a", files={"f.txt": b"y"}),
        ExecutionRequest("print(1)", stdin=b"a", files={"f.txt": b"x"}, limits=Limits(cpus=1)),
    ]
    hashes = {v.content_hash("img") for v in variants} | {base.content_hash("other")}
    assert base.content_hash("img") not in hashes
    assert len(hashes) == 5


def test_result_round_trips_through_json() -> None:
    result = ExecutionResult(
        "blocked", None, "", "no", 0.0, violations=(Violation(1, 0, "import", "no os"),)
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert ExecutionResult.from_dict(data) == result
    assert not ExecutionResult("timeout", 137, "", "", 2.0).cacheable
    assert ExecutionResult.blocked([Violation(2, 1, "call", "eval")]).status == "blocked"


def test_payload_frames_code_stdin_and_files() -> None:
    request = ExecutionRequest(
        "print('é')", stdin=b"in", files={"b.txt": b"BB", "a/x": b"A"}, limits=Limits(timeout_s=2.5)
    )
    payload = encode_payload(request, "n0nce")
    size = int(payload[:10])
    header = json.loads(payload[10 : 10 + size])
    assert header == {
        "done": done_marker("n0nce"),
        "timeout": "2.500",
        "code": 11,
        "stdin": 2,
        "files": [["a/x", 1], ["b.txt", 2]],
    }
    assert payload[10 + size :] == "print('é')".encode() + b"in" + b"A" + b"BB"


def test_collector_demultiplexes_split_frames() -> None:
    collector = OutputCollector(cap=100)
    stream = frame(1, b"hello ") + frame(2, b"oops") + frame(1, b"world")
    for i in range(0, len(stream), 3):
        collector.feed(stream[i : i + 3])
    assert (collector.text(1), collector.text(2)) == ("hello world", "oops")
    assert not collector.truncated


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_the_end_line_is_seen_and_removed_however_frames_cut_it(step: int) -> None:
    """The bootstrap's end line is noted and dropped from stderr, whether it comes in one
    frame or in pieces; the program's own output around it is kept as it was."""
    marker = done_marker("abc123")
    collector = OutputCollector(cap=1000, marker=marker)
    stderr = b"last words, no newline" + ("\n" + marker + "\n").encode()
    stream = frame(1, b"out\n") + b"".join(
        frame(2, stderr[i : i + step]) for i in range(0, len(stderr), step)
    )
    collector.feed(stream)
    assert collector.ended
    assert (collector.text(1), collector.text(2)) == ("out\n", "last words, no newline")


def test_the_end_line_is_seen_past_the_cap() -> None:
    marker = done_marker("n")
    collector = OutputCollector(cap=1024, marker=marker)
    collector.feed(frame(2, b"x" * 5000) + frame(2, ("\n" + marker + "\n").encode()))
    assert collector.ended and collector.truncated and len(collector.text(2)) == 1024


def test_a_forged_end_line_without_the_nonce_is_output() -> None:
    collector = OutputCollector(cap=1000, marker=done_marker("secret"))
    collector.feed(frame(2, ("\n" + done_marker("guess") + "\n").encode()))
    assert not collector.ended and "codeflow-done:guess" in collector.text(2)


def test_collector_caps_each_stream_and_detects_a_flood() -> None:
    collector = OutputCollector(cap=10, flood_after=20)
    collector.feed(frame(1, b"x" * 15) + frame(2, b"y" * 5))
    assert collector.text(1) == "x" * 10
    assert collector.text(2) == "y" * 5
    assert collector.truncated and not collector.flooding
    collector.feed(frame(1, b"x" * 30))
    assert collector.flooding
    assert collector.discarded == 35


def hardened_attrs(limits: Limits) -> dict[str, Any]:
    return {
        "Config": {"User": "10001:10001"},
        "HostConfig": {
            "Memory": limits.memory_bytes,
            "MemorySwap": limits.memory_bytes,
            "NanoCpus": limits.nano_cpus,
            "PidsLimit": limits.pids,
            "ReadonlyRootfs": True,
            "NetworkMode": "none",
            "CapDrop": ["ALL"],
            "CapAdd": None,
            "Privileged": False,
            "Init": True,
            "Tmpfs": {"/tmp": expected_tmpfs(limits)},
            "SecurityOpt": ["no-new-privileges"],
            "IpcMode": "private",
            "Ulimits": [
                {"Name": "nofile", "Soft": limits.nofile, "Hard": limits.nofile},
                {"Name": "fsize", "Soft": limits.fsize_mb << 20, "Hard": limits.fsize_mb << 20},
            ],
        },
    }


def test_limit_check_accepts_a_fully_hardened_container() -> None:
    limits = Limits()
    assert limit_mismatches(hardened_attrs(limits), limits, "10001:10001") == []


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("MemorySwap", -1, "MemorySwap"),
        ("NetworkMode", "bridge", "NetworkMode"),
        ("ReadonlyRootfs", False, "ReadonlyRootfs"),
        ("SecurityOpt", [], "SecurityOpt"),
        ("Binds", ["/:/host"], "Binds"),
        ("Tmpfs", {"/tmp": "rw,size=64m"}, "Tmpfs"),
        ("Ulimits", [], "Ulimit nofile"),
    ],
)
def test_limit_check_names_every_missing_limit(key: str, value: Any, named: str) -> None:
    limits = Limits()
    attrs = hardened_attrs(limits)
    attrs["HostConfig"][key] = value
    problems = limit_mismatches(attrs, limits, "10001:10001")
    assert any(p.startswith(named) for p in problems), problems
    assert limit_mismatches(hardened_attrs(limits), limits, "0:0") == [
        "User is '10001:10001', expected '0:0'"
    ]


def test_find_mirror_reads_deb822_sources_and_skips_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert find_mirror(tmp_path) == "http://mirror.example/debian"


def test_find_mirror_reads_one_line_sources(tmp_path: Path) -> None:
    line = "deb [arch=amd64] http://m.example/debian bookworm main\n"
    (tmp_path / "sources.list").write_text(line)
    assert find_mirror(tmp_path) == "http://m.example/debian"
    with pytest.raises(ConfigError):
        find_mirror(tmp_path / "missing")


def test_strip_setid_bits(tmp_path: Path) -> None:
    tool = tmp_path / "usr/bin/su"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)
    plain = tmp_path / "usr/bin/ls"
    plain.write_text("")
    plain.chmod(0o755)
    assert strip_setid_bits(tmp_path) == [tool]
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert len(recipe_hash()) == 12

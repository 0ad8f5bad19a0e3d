"""Plain data of the sandbox pipeline: limits, a request, a result, a policy violation.

No I/O and no third-party imports: the AST policy, the Docker adapter, the flow and the
cache all speak these types. ``classify_outcome`` is here too because the order in which
exit code, OOM flag, timeout and truncation are weighed is policy, not plumbing.

>>> request = ExecutionRequest(code="print('hi')", limits=Limits(timeout_s=2))
>>> classify_outcome(exit_code=137, oom_killed=False, timed_out=True, truncated=False)
'timeout'
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from config.errors import ConfigError

Status = Literal["ok", "error", "blocked", "rejected", "timeout", "oom", "output_limit"]
STATUSES: tuple[Status, ...] = (
    "ok", "error", "blocked", "rejected", "timeout", "oom", "output_limit",
)  # fmt: skip
SIGKILL_EXIT = 137
MAX_INPUT_FILES = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """What one execution may use. Defaults follow ARCHITECTURE.md (512 MB, 0.5 CPU)."""

    timeout_s: float = 30.0
    memory_mb: int = 512
    cpus: float = 0.5
    pids: int = 64
    tmpfs_mb: int = 64
    output_bytes: int = 1_000_000
    nofile: int = 256
    fsize_mb: int = 64

    def __post_init__(self) -> None:
        checks = {
            "timeout_s": 0.1 <= self.timeout_s <= 3600,
            "memory_mb": 16 <= self.memory_mb <= 65536,
            "cpus": 0.01 <= self.cpus <= 64,
            "pids": 8 <= self.pids <= 4096,
            "tmpfs_mb": 1 <= self.tmpfs_mb <= 4096,
            "output_bytes": 1024 <= self.output_bytes <= 64_000_000,
            "nofile": 16 <= self.nofile <= 65536,
            "fsize_mb": 1 <= self.fsize_mb <= 4096,
        }
        for name, valid in checks.items():
            if not valid:
                raise ConfigError(f"sandbox limit {name}={getattr(self, name)!r} is out of range")

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @property
    def nano_cpus(self) -> int:
        return round(self.cpus * 1e9)

    def container_shape(self) -> tuple[int, float, int, int, int, int]:
        """The part baked into a container at creation (a warm container must match it)."""
        return (self.memory_mb, self.cpus, self.pids, self.tmpfs_mb, self.nofile, self.fsize_mb)


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason the AST policy refused the code (1-based line, 0-based column)."""

    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, col {self.col}: {self.message} [{self.rule}]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """Untrusted code plus what it may read: stdin bytes and small input files.

    ``files`` maps relative POSIX paths (no ``..``, no absolute paths) to contents; they
    appear under the working directory ``/tmp/work`` next to ``main.py``.
    """

    code: str
    stdin: bytes = b""
    files: Mapping[str, bytes] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if len(self.files) > MAX_INPUT_FILES:
            raise ConfigError(f"at most {MAX_INPUT_FILES} input files, got {len(self.files)}")
        for name in self.files:
            check_input_name(name)

    def content_hash(self, image_id: str) -> str:
        """hash(code, inputs, image ID, limits): the result-cache key material."""
        digest = hashlib.sha256()
        for part in (self.code.encode("utf-8", "surrogatepass"), self.stdin, image_id.encode()):
            digest.update(len(part).to_bytes(8, "big") + part)
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        digest.update(json.dumps(asdict(self.limits), sort_keys=True).encode())
        return digest.hexdigest()


def check_input_name(name: str) -> str:
    """Refuse input file names that could land outside the work directory."""
    normal = posixpath.normpath(name)
    bad = (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or normal != name
        or normal.split("/")[0] in ("..", ".")
        or normal == "main.py"
        or len(name) > 255
    )
    if bad:
        raise ConfigError(f"input file name {name!r} must be a plain relative path")
    return name


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What came back. User code failing is data here (status ``error``), not an exception."""

    status: Status
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool = False
    oom_killed: bool = False
    timed_out: bool = False
    violations: tuple[Violation, ...] = ()
    run_id: str = ""
    container_id: str = ""
    image_id: str = ""
    #: The container runtime that ran it (``runc``, ``runsc``) and the seccomp profile in
    #: force (its name and version); empty when nothing ran.
    runtime: str = ""
    seccomp: dict[str, Any] | None = None
    #: What the program used, from its cgroup: ``peak_memory_bytes``, ``cpu_seconds``,
    #: ``processes``, ``bytes_written`` (to its tmpfs); None when nothing ran.
    resources: dict[str, Any] | None = None

    @property
    def cacheable(self) -> bool:
        """Timeouts depend on load, not on the code: never cache them."""
        return self.status != "timeout"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["violations"] = [v.to_dict() for v in self.violations]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionResult:
        values = dict(data)
        values["violations"] = tuple(Violation(**v) for v in values.get("violations", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def blocked(cls, violations: list[Violation], run_id: str = "") -> ExecutionResult:
        """The result for code the AST policy refused: nothing ran."""
        text = "\n".join(str(v) for v in violations)
        return cls("blocked", None, "", text, 0.0, violations=tuple(violations), run_id=run_id)

    @classmethod
    def rejected(cls, problem: Violation, run_id: str = "") -> ExecutionResult:
        """The result for code that is not Python at all (a syntax error, bytes that are not
        UTF-8): nothing ran, and the message and line say why."""
        return cls("rejected", None, "", str(problem), 0.0, violations=(problem,), run_id=run_id)


def classify_outcome(
    *, exit_code: int | None, oom_killed: bool, timed_out: bool, truncated: bool
) -> Status:
    """Weigh the signals in a fixed order: OOM, then timeout, then output cap, then exit code.

    The engine's ``OOMKilled`` flag is the only trustworthy OOM signal we classify on; a
    SIGKILL (137) past the deadline is a timeout; truncated output wins over the exit code
    because a flood is usually what got the process killed.
    """
    if oom_killed:
        return "oom"
    if timed_out:
        return "timeout"
    if truncated:
        return "output_limit"
    return "ok" if exit_code == 0 else "error"

"""What crosses the container boundary, as pure functions: no Docker, no sockets.

Three pieces, kept apart from the adapter so they can be unit-tested and read on their own:

* the **payload**: code, stdin and input files framed as ``<10-digit header length>
  <JSON header><raw segments>`` and written to the container's stdin. A container with a
  read-only root can't receive ``put_archive``; stdin needs no volume and no host path.
* the **bootstrap**: a few lines run by ``python3 -I -S -c`` inside the container. It reads
  the payload, writes the files into ``/tmp/work`` with ``O_EXCL | O_NOFOLLOW``, and runs
  ``timeout -s KILL <s> python3 main.py`` as its child, stdin the user's. The timeout starts
  only once the code has arrived, so a pre-started (warm) container waits for free. When the
  program has ended, the bootstrap says so on stderr (a line with a per-run nonce) and waits
  for its own stdin to close before it exits with the program's status: meanwhile the
  container, and its cgroup, are still there for the host to read what the program used.
  It makes itself undumpable first, so the program cannot read the nonce from its memory.
* the **output collector**: demultiplexes Docker's attach stream (8-byte frame headers),
  keeps at most ``cap`` bytes per stream and counts the rest, so a flood costs no memory.

``limit_mismatches`` compares an inspected container with the limits that were asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tasks.sandbox.models import ExecutionRequest, Limits

CONTAINER_TMP = "/tmp"  # noqa: S108 (a path inside the container, a private tmpfs)
WORKDIR = CONTAINER_TMP + "/work"
TMPFS_FLAGS = "rw,noexec,nosuid,nodev"
HEADER_DIGITS = 10

BOOTSTRAP = """\
import json, os, signal, sys
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
except Exception:
    pass
r = sys.stdin.buffer
def rd(n):
    b = r.read(n)
    if len(b) != n:
        os._exit(125)
    return b
h = json.loads(rd(int(rd(10))))
def put(path, data):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
os.makedirs("/tmp/work", exist_ok=True)
os.chdir("/tmp/work")
put("main.py", rd(h["code"]))
put("/tmp/.stdin", rd(h["stdin"]))
for name, n in h["files"]:
    put(name, rd(n))
pid = os.fork()
if pid == 0:
    fd = os.open("/tmp/.stdin", os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    os.unlink("/tmp/.stdin")
    os.execv("/usr/bin/timeout", ["timeout", "-s", "KILL", h["timeout"],
             "python3", "-B", "-u", "-E", "-s", "main.py"])
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
os.write(2, b"\\n" + h["done"].encode() + b"\\n")
signal.alarm(30)
while r.read(65536):
    pass
os._exit(code if code >= 0 else 128 - code)
"""


def bootstrap_command() -> list[str]:
    """The container's command: an isolated interpreter running the bootstrap."""
    return ["python3", "-I", "-S", "-c", BOOTSTRAP]


def done_marker(nonce: str) -> str:
    """The line the bootstrap writes on stderr once the program has ended."""
    return f"\0codeflow-done:{nonce}"


def encode_payload(request: ExecutionRequest, nonce: str) -> bytes:
    """Frame a request for the bootstrap: lengths in a JSON header, then raw bytes."""
    code = request.code.encode("utf-8", "surrogatepass")
    names = sorted(request.files)
    header = {
        "done": done_marker(nonce),
        "timeout": f"{request.limits.timeout_s:.3f}",
        "code": len(code),
        "stdin": len(request.stdin),
        "files": [[name, len(request.files[name])] for name in names],
    }
    head = json.dumps(header).encode()
    parts = [f"{len(head):0{HEADER_DIGITS}d}".encode(), head, code, request.stdin]
    parts.extend(request.files[name] for name in names)
    return b"".join(parts)


class OutputCollector:
    """Demultiplex Docker's attach stream with a byte cap per stream.

    Frames are ``[stream, 0, 0, 0, size (4 bytes, big-endian)] + payload``; stream 1 is
    stdout, 2 stderr. Bytes past ``cap`` are counted, not kept. ``flooding`` turns true
    once the discarded bytes exceed ``flood_after``: the caller then kills the container.
    """

    def __init__(
        self, cap: int, flood_after: int | None = None, *, marker: str | None = None
    ) -> None:
        self.cap = cap
        self.flood_after = cap if flood_after is None else flood_after
        self._pending = bytearray()
        self._kept: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.discarded = 0
        #: The bootstrap's "program ended" line (stderr), removed from the output when seen.
        self.marker = ("\n" + marker + "\n").encode() if marker else None
        self.ended = False
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= 8:
            size = int.from_bytes(self._pending[4:8], "big")
            if len(self._pending) < 8 + size:
                return
            stream = self._pending[0]
            chunk = bytes(self._pending[8 : 8 + size])
            del self._pending[: 8 + size]
            self._keep(stream, self._without_marker(chunk) if stream == 2 else chunk)

    def _without_marker(self, chunk: bytes) -> bytes:
        """``chunk`` without the end line, noting it (found even across frames, and after
        the cap: it is looked for in what arrives, not in what is kept)."""
        if self.marker is None or self.ended:
            return chunk
        seen = self._tail + chunk
        at = seen.find(self.marker)
        if at < 0:
            self._tail = seen[-(len(self.marker) - 1) :]
            return chunk
        self.ended = True
        head, end = len(self._tail), at + len(self.marker)
        if at < head:  # the line began in earlier frames, already kept: drop it there
            kept = self._kept[2]
            del kept[max(0, len(kept) - (head - at)) :]
            return chunk[end - head :]
        return chunk[: at - head] + chunk[end - head :]

    def _keep(self, stream: int, chunk: bytes) -> None:
        kept = self._kept.setdefault(stream, bytearray())
        room = max(0, self.cap - len(kept))
        kept += chunk[:room]
        self.discarded += max(0, len(chunk) - room)

    @property
    def truncated(self) -> bool:
        return self.discarded > 0

    @property
    def flooding(self) -> bool:
        return self.discarded > self.flood_after

    def text(self, stream: int) -> str:
        return self._kept.get(stream, bytearray()).decode("utf-8", "replace")


def expected_tmpfs(limits: Limits) -> str:
    return f"{TMPFS_FLAGS},size={limits.tmpfs_mb}m"


def limit_mismatches(attrs: Mapping[str, Any], limits: Limits, user: str) -> list[str]:
    """Every requested limit the inspected container does not carry, as readable lines."""
    host = attrs.get("HostConfig") or {}
    config = attrs.get("Config") or {}
    checks: list[tuple[str, object, object]] = [
        ("Memory", host.get("Memory"), limits.memory_bytes),
        ("MemorySwap", host.get("MemorySwap"), limits.memory_bytes),
        ("NanoCpus", host.get("NanoCpus"), limits.nano_cpus),
        ("PidsLimit", host.get("PidsLimit"), limits.pids),
        ("ReadonlyRootfs", host.get("ReadonlyRootfs"), True),
        ("NetworkMode", host.get("NetworkMode"), "none"),
        ("CapDrop", host.get("CapDrop"), ["ALL"]),
        ("CapAdd", host.get("CapAdd") or [], []),
        ("Privileged", host.get("Privileged"), False),
        ("Init", host.get("Init"), True),
        ("Binds", host.get("Binds") or [], []),
        ("Mounts", host.get("Mounts") or [], []),
        ("Devices", host.get("Devices") or [], []),
        ("Tmpfs", host.get("Tmpfs"), {CONTAINER_TMP: expected_tmpfs(limits)}),
        ("User", config.get("User"), user),
        ("PidMode", host.get("PidMode") or "", ""),
        ("UsernsMode", host.get("UsernsMode") or "", ""),
    ]
    problems = [
        f"{name} is {got!r}, expected {want!r}" for name, got, want in checks if got != want
    ]
    security = host.get("SecurityOpt") or []
    if not any(opt.startswith("no-new-privileges") for opt in security):
        problems.append(f"SecurityOpt is {security!r}, expected no-new-privileges")
    if host.get("IpcMode") in ("host", "shareable"):
        problems.append(f"IpcMode is {host.get('IpcMode')!r}, expected private")
    problems.extend(_ulimit_mismatches(host.get("Ulimits") or [], limits))
    return problems


def _ulimit_mismatches(ulimits: list[Mapping[str, Any]], limits: Limits) -> list[str]:
    have = {u.get("Name"): (u.get("Soft"), u.get("Hard")) for u in ulimits}
    want = {"nofile": limits.nofile, "fsize": limits.fsize_mb * 1024 * 1024}
    return [
        f"Ulimit {name} is {have.get(name)!r}, expected {value}"
        for name, value in want.items()
        if have.get(name) != (value, value)
    ]

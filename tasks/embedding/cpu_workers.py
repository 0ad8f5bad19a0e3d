"""CPU work of the vectorize flow in worker processes, so that chunking and local embedding
run on every core instead of taking turns for the flow process's GIL.

Chunking (``ast`` parsing, splitting, each chunk's BM25 document) and the local embedder
(tokenizing, pooling) are mostly Python. A :class:`WorkerPool` keeps ``size`` long-lived
``python -m tasks.embedding.cpu_workers`` processes and sends each request to an idle one over its
stdin/stdout as a length-prefixed frame: a JSON header (orjson) and a binary payload (the
files' raw bytes, the texts as JSON, the vectors as little-endian float32). Nothing is
pickled. The flow process keeps the orchestration, the caches and the writes.

A worker that dies (killed, out of memory, a crash in a parser) costs only the request it
was serving: the call raises :class:`~config.errors.WorkerError` (the flow's task retries
it) and the next call starts a fresh worker. A request the wire cannot carry (text JSON
cannot encode) is served in the calling process instead.

    python -m tasks.embedding.cpu_workers      # serve requests on stdin/stdout until EOF
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import os
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import orjson

from config.errors import WorkerError
from tasks.index.chunking import ChunkingPolicy, Skip, chunk_files
from tasks.records import Chunk
from tasks.tokens.code_tokens import search_documents

if TYPE_CHECKING:
    from tasks.embedding.local_embedder import LocalEmbedder

_LENGTH = struct.Struct(">I")
Files = Sequence[tuple[str, bytes]]
Frame = tuple[dict[str, Any], bytes]
Vectors = np.ndarray[Any, np.dtype[np.float32]]


def write_frame(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    head = orjson.dumps(header)
    stream.write(_LENGTH.pack(len(head)) + head + _LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Frame | None:
    """The next frame, or None at a clean end of stream (EOF before a frame starts)."""
    size = stream.read(_LENGTH.size)
    if not size:
        return None
    header = orjson.loads(_read_exactly(stream, _LENGTH.unpack(size)[0]))
    payload = _read_exactly(stream, _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))[0])
    return header, payload


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"stream ended after {len(data)} of {size} bytes")
    return data


# ---- the worker's side ----------------------------------------------------------------


class _Embedders:
    """The worker's local embedders by dimensions, loaded in the background on request."""

    def __init__(self) -> None:
        self._loaders: dict[int, threading.Thread] = {}
        self._loaded: dict[int, Any] = {}

    def preload(self, dimensions: int) -> None:
        if dimensions not in self._loaders:
            loader = threading.Thread(target=self._load, args=(dimensions,), daemon=True)
            self._loaders[dimensions] = loader
            loader.start()

    def _load(self, dimensions: int) -> None:
        from tasks.embedding.local_embedder import LocalEmbedder

        self._loaded[dimensions] = LocalEmbedder(dimensions=dimensions)

    def get(self, dimensions: int) -> Any:
        self.preload(dimensions)
        self._loaders[dimensions].join()
        if dimensions not in self._loaded:  # the loader failed: load here, raising its error
            self._load(dimensions)
        return self._loaded[dimensions]


def chunk_request(header: dict[str, Any], payload: bytes) -> Frame:
    """Chunk the files a request carries; the reply lists chunks with their BM25 text."""
    fields = header["policy"]
    policy = ChunkingPolicy(**{**fields, "ignore_globs": tuple(fields["ignore_globs"])})
    files, offset = [], 0
    for path, size in zip(header["paths"], header["sizes"], strict=True):
        files.append((path, payload[offset : offset + size]))
        offset += size
    chunks, skips = chunk_files(files, policy)
    documents = search_documents(chunks)
    rows = [[*_chunk_fields(c), doc] for c, doc in zip(chunks, documents, strict=True)]
    return {"chunks": rows, "skips": [[s.path, s.reason] for s in skips]}, b""


def _chunk_fields(chunk: Chunk) -> list[Any]:
    return [chunk.path, chunk.language, chunk.start_line, chunk.end_line, chunk.text,
            chunk.symbol, chunk.kind]  # fmt: skip


def serve(stdin: IO[bytes], stdout: IO[bytes], preload_dimensions: int | None = None) -> None:
    embedders = _Embedders()
    if preload_dimensions is not None:
        embedders.preload(preload_dimensions)

    def embed(header: dict[str, Any], payload: bytes) -> Frame:
        vectors = embedders.get(header["dimensions"]).embed(orjson.loads(payload))
        return {"rows": len(vectors)}, np.ascontiguousarray(vectors, dtype="<f4").tobytes()

    def preload(header: dict[str, Any], payload: bytes) -> Frame:
        embedders.preload(header["dimensions"])
        return {}, b""

    handlers: dict[str, Callable[[dict[str, Any], bytes], Frame]] = {
        "chunk": chunk_request, "embed": embed, "preload": preload,
    }  # fmt: skip
    while (frame := read_frame(stdin)) is not None:
        try:
            write_frame(stdout, *handlers[frame[0]["op"]](*frame))
        except orjson.JSONEncodeError as exc:
            write_frame(stdout, {"unencodable": str(exc)})


# ---- the flow's side --------------------------------------------------------------------


class Worker:
    """One worker process, started on first use and again after it dies."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request on the pipe at a time
        self.preload_dimensions: int | None = None  # the local embedder to load at start

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def call(self, header: dict[str, Any], payload: bytes = b"") -> Frame | None:
        """The worker's reply, or None if the reply cannot travel as JSON."""
        with self._lock:
            return self._call(header, payload)

    def _call(self, header: dict[str, Any], payload: bytes) -> Frame | None:
        proc = self._started()
        pid = proc.pid
        assert proc.stdin is not None and proc.stdout is not None
        try:
            write_frame(proc.stdin, header, payload)
            frame = read_frame(proc.stdout)
        except (OSError, EOFError, ValueError) as exc:
            self.close()
            raise WorkerError(f"a worker process failed mid-request ({exc})", pid=pid) from exc
        if frame is None:
            code = self.close()
            raise WorkerError(f"a worker process exited (code {code}) mid-request", pid=pid)
        return None if "unencodable" in frame[0] else frame

    def preload(self, dimensions: int) -> None:
        """Start the process loading the local embedder in the background, or have a
        running one do so; a worker busy with a request loads it when it first embeds."""
        self.preload_dimensions = dimensions
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._started()
            else:
                self._call({"op": "preload", "dimensions": dimensions}, b"")
        finally:
            self._lock.release()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            preload = self.preload_dimensions
            extra = [] if preload is None else ["--preload-embedder", str(preload)]
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tasks.embedding.cpu_workers", *extra],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._proc

    def close(self) -> int | None:
        """Stop the process (EOF first, then kill); returns its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


class WorkerPool:
    """``size`` workers shared by the threads of this process; size 0 works in-process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.workers = [Worker() for _ in range(size)]
        self._idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for worker in self.workers:
            self._idle.put(worker)

    def _call(self, header: dict[str, Any], payload: bytes = b"") -> Frame | None:
        worker = self._idle.get()
        try:
            return worker.call(header, payload)
        finally:
            self._idle.put(worker)

    def chunk(self, files: Files, policy: ChunkingPolicy) -> tuple[list[Chunk], list[Skip]]:
        if self.size == 0 or not files:
            return chunk_files(files, policy)
        header = {"op": "chunk", "policy": dataclasses.asdict(policy),
                  "paths": [p for p, _ in files], "sizes": [len(d) for _, d in files]}  # fmt: skip
        reply = self._call(header, b"".join(data for _, data in files))
        if reply is None:
            return chunk_files(files, policy)
        chunks = [
            Chunk(path, language, start, end, text, symbol, kind, search_text=tokens)
            for path, language, start, end, text, symbol, kind, tokens in reply[0]["chunks"]
        ]
        return chunks, [Skip(path, reason) for path, reason in reply[0]["skips"]]

    def preload_embedder(self, dimensions: int) -> None:
        """Have every worker load the local embedder in the background (returns at once)."""
        for worker in self.workers:
            worker.preload(dimensions)

    def embed(self, texts: Sequence[str], dimensions: int) -> Vectors | None:
        """The local embedder's vectors for ``texts``, or None if they cannot be sent."""
        try:
            payload = orjson.dumps(list(texts))
        except orjson.JSONEncodeError:
            return None
        reply = self._call({"op": "embed", "dimensions": dimensions}, payload)
        if reply is None:
            return None
        return np.frombuffer(reply[1], dtype="<f4").reshape(-1, dimensions).copy()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class PooledLocalEmbedder:
    """The local embedder, run by the pool's workers; the same ``id`` and vectors as
    :class:`~tasks.embedding.local_embedder.LocalEmbedder`, which it falls back to in-process
    for texts
    the wire cannot carry."""

    def __init__(self, pool: WorkerPool, dimensions: int) -> None:
        from tasks.embedding.local_embedder import local_embedder_id

        self._pool, self._dimensions = pool, dimensions
        self._id = local_embedder_id(dimensions)

    @property
    def id(self) -> str:
        return self._id

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def preload(self) -> None:
        self._pool.preload_embedder(self._dimensions)

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = self._pool.embed(texts, self._dimensions)
        return vectors if vectors is not None else self._in_process.embed(texts)

    @functools.cached_property
    def _in_process(self) -> LocalEmbedder:
        from tasks.embedding.local_embedder import LocalEmbedder

        return LocalEmbedder(dimensions=self._dimensions)


def default_workers() -> int:
    """One per core: the flow process itself mostly waits on them, Redis and LanceDB."""
    return os.cpu_count() or 1


@functools.cache
def worker_pool(size: int) -> WorkerPool:
    pool = WorkerPool(size)
    atexit.register(pool.close)
    return pool


def main() -> None:
    """Serve on the real stdout; anything printed by accident goes to stderr instead."""
    parser = argparse.ArgumentParser(prog="python -m tasks.embedding.cpu_workers")
    parser.add_argument("--preload-embedder", type=int, metavar="DIMENSIONS")
    args = parser.parse_args()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, out, preload_dimensions=args.preload_embedder)


if __name__ == "__main__":
    main()

"""The worker processes that chunk and embed for the flow: same results as in-process,
recovery when a worker dies, fallbacks for what the wire cannot carry, nothing left running."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

from config.errors import WorkerError
from tasks.embedding.cpu_workers import PooledLocalEmbedder, WorkerPool
from tasks.embedding.local_embedder import LocalEmbedder
from tasks.index.chunking import ChunkingPolicy, chunk_files
from tasks.tokens.code_tokens import search_document

FILES = [
    (
        "pkg/models.py",
        b'class User:\n    """A user."""\n\n    def greet(self):\n        return 1\n',
    ),
    ("pkg/util.py", "def f():\n    return 'h\u00e9llo \u6f22\u5b57'\n".encode()),
    ("latin1.py", b"# -*- coding: latin-1 -*-\nname = '\xe9t\xe9'\n"),
    ("blob.bin", bytes(range(256)) * 40),
    ("notes/readme.md", b"# Title\n\nSome words about the cache.\n" * 50),
    ("vendor/lib.py", b"def vendored():\n    pass\n"),
]


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(2)
    yield pool
    pool.close()


def test_chunks_equal_in_process_chunking(pool: WorkerPool) -> None:
    policy = ChunkingPolicy(max_chunk_chars=200)
    ours, our_skips = pool.chunk(FILES, policy)
    theirs, their_skips = chunk_files(FILES, policy)
    assert ours == theirs and our_skips == their_skips
    assert {s.reason for s in our_skips} >= {"binary", "vendored"}
    for chunk in ours:  # the BM25 document was built in the worker, and equals ours
        assert chunk.search_text is not None
        plain = chunk.__class__(chunk.path, chunk.language, chunk.start_line, chunk.end_line,
                                chunk.text, chunk.symbol, chunk.kind)  # fmt: skip
        assert chunk.search_text == search_document(plain)


def test_embeddings_equal_the_in_process_embedder(pool: WorkerPool) -> None:
    texts = ["def parse(path): ...", "", "class Cache:\n    def get(self, key): ...", "x " * 900]
    embedder = PooledLocalEmbedder(pool, 128)
    embedder.preload()
    assert embedder.id == LocalEmbedder(dimensions=128).id
    ours = embedder.embed(texts)
    assert ours.shape == (4, 128) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, LocalEmbedder(dimensions=128).embed(texts))


def test_texts_json_cannot_carry_are_embedded_in_process(pool: WorkerPool) -> None:
    texts = ["lone surrogate \udcff here", "fine"]
    assert pool.embed(texts, 64) is None
    vectors = PooledLocalEmbedder(pool, 64).embed(texts)
    np.testing.assert_array_equal(vectors, LocalEmbedder(dimensions=64).embed(texts))


def test_a_worker_that_dies_mid_request_fails_that_request_only() -> None:
    pool = WorkerPool(1)
    try:
        pool.chunk(FILES[:1], ChunkingPolicy())
        first = pool.workers[0].pid
        with pytest.raises(WorkerError, match="exited"):
            pool.workers[0].call({"op": "no-such-operation"})  # the worker crashes on it
        chunks, _ = pool.chunk(FILES[:2], ChunkingPolicy())
        assert pool.workers[0].pid not in (None, first)
        assert {c.path for c in chunks} == {"pkg/models.py", "pkg/util.py"}
    finally:
        pool.close()


def test_a_worker_killed_while_idle_is_replaced_transparently(pool: WorkerPool) -> None:
    pool.chunk(FILES[:1], ChunkingPolicy())
    worker = pool.workers[0]
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=10)
    for _ in pool.workers:  # whichever worker serves it, every call succeeds
        assert pool.chunk(FILES[:1], ChunkingPolicy())[0]


def test_close_leaves_no_process_and_size_zero_works_in_process() -> None:
    pool = WorkerPool(2)
    pool.preload_embedder(64)
    pids = [w.pid for w in pool.workers if w.pid is not None]
    assert len(pids) == 2
    pool.close()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    inline = WorkerPool(0)
    assert inline.chunk(FILES, ChunkingPolicy()) == chunk_files(FILES, ChunkingPolicy())

"""The native extension against the Python path it replaces, on real code, in one process.

    .venv/bin/python -m benchmarks.native [DIR] [--files 2500] [--repeat 3]

Corpus: the first ``--files`` Python files of DIR (default: this interpreter's
site-packages), chunked as an index run chunks them. Printed per step, best-of-N CPU
seconds with ``CODEFLOW_NATIVE=0`` and with the extension, and whether both give the same
output (token IDs, vectors bit for bit, BM25 documents):

- tokenize: every chunk's token IDs, the piece memo starting empty (as in a worker);
- tokenize, warm memo: the same chunks again (pieces known: cutting and look-ups only);
- pool: each chunk's mean token vector from those IDs;
- BM25 documents: each chunk's code-aware tokens, memos cleared.

Each step runs in the flow's batches of 2,048 chunks.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BATCH = 2048


@contextmanager
def native_turned(on: bool) -> Iterator[None]:
    before = os.environ.get("CODEFLOW_NATIVE")
    os.environ["CODEFLOW_NATIVE"] = "1" if on else "0"
    try:
        yield
    finally:
        os.environ.pop("CODEFLOW_NATIVE")
        if before is not None:
            os.environ["CODEFLOW_NATIVE"] = before


def corpus(source: Path, limit: int) -> list[Any]:
    from tasks.index.chunking import chunk_files

    files = sorted(p for p in source.rglob("*.py") if p.is_file() and not p.is_symlink())[:limit]
    chunks, _ = chunk_files((p.relative_to(source).as_posix(), p.read_bytes()) for p in files)
    return chunks


def best_of(repeat: int, setup: Callable[[], Any], step: Callable[[Any], Any]) -> tuple[float, Any]:
    """Best CPU seconds of ``step(setup())`` (setup not timed), and the last output."""
    best, out = float("inf"), None
    for _ in range(repeat):
        state = setup()
        start = time.process_time()
        out = step(state)
        best = min(best, time.process_time() - start)
    return best, out


def measure(texts: list[str], chunks: list[Any], repeat: int) -> dict[str, tuple[float, Any]]:
    from tasks.embedding.local_embedder import LocalEmbedder
    from tasks.tokens import code_tokens as codetokens

    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]

    def tokenize(embedder: LocalEmbedder) -> list[Any]:
        return [embedder._token_ids(b) for b in batches]

    def warm() -> tuple[float, Any]:
        best, out = float("inf"), None
        for _ in range(repeat):
            embedder = LocalEmbedder()
            tokenize(embedder)  # every piece learned
            start = time.process_time()
            out = tokenize(embedder)
            best = min(best, time.process_time() - start)
        return best, out

    def pool(state: tuple[LocalEmbedder, list[Any]]) -> list[Any]:
        embedder, ids = state
        outs = []
        for batch, (flat, bounds) in zip(batches, ids, strict=True):
            out = np.zeros((len(batch), embedder.dimensions), np.float32)
            embedder._pool(flat, bounds, out)
            outs.append(out)
        return outs

    def documents(_: None) -> list[str]:
        return [d for i in range(0, len(chunks), BATCH)
                for d in codetokens.search_documents(chunks[i : i + BATCH])]  # fmt: skip

    def fresh_memos() -> None:
        codetokens._run_tokens.cache_clear()
        codetokens._expand.cache_clear()
        codetokens._native_tokenizer.cache_clear()

    results: dict[str, tuple[float, Any]] = {}
    results["tokenize"] = best_of(repeat, LocalEmbedder, tokenize)
    results["tokenize, warm memo"] = warm()
    embedder = LocalEmbedder()
    ids = tokenize(embedder)
    results["pool"] = best_of(repeat, lambda: (embedder, ids), pool)
    results["BM25 documents"] = best_of(repeat, fresh_memos, documents)
    return results


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def main() -> None:
    from tasks.native_extension import native_built

    parser = argparse.ArgumentParser()
    parser.add_argument("source", nargs="?", type=Path,
                        default=Path(sysconfig.get_paths()["purelib"]))  # fmt: skip
    parser.add_argument("--files", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not native_built():
        raise SystemExit("the native extension is not built: run scripts/bootstrap (needs cargo)")
    chunks = corpus(args.source, args.files)
    texts = [c.text for c in chunks]
    megabytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    with native_turned(False):
        python = measure(texts, chunks, args.repeat)
    with native_turned(True):
        native = measure(texts, chunks, args.repeat)
    rows = {
        step: {
            "Python CPU s": round(python[step][0], 3),
            "native CPU s": round(native[step][0], 3),
            "speed-up": round(python[step][0] / native[step][0], 1),
            "same output": same(python[step][1], native[step][1]),
        }
        for step in python
    }
    print(f"corpus: {args.files} files of {args.source}, {len(chunks)} chunks, {megabytes:.1f} MB")
    print(pd.DataFrame(rows).T.to_string())


if __name__ == "__main__":
    main()

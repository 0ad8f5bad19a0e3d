"""Search benchmark: embedder throughput and hybrid-search latency at 100K chunks.

    .venv/bin/python -m benchmarks.search [--rows 100000] [--random-bulk] [--queries 200]

Corpus: the Python standard library of the running interpreter, cut into 1,500-character
windows at several offsets (the same file seen at shifted starts) until ``--rows`` chunks
exist; every row is real code text. Vectors come from the real ``LocalEmbedder`` over that
text (~45 s for 100K rows) unless ``--random-bulk`` is given, in which case only the first
2 MB is embedded and the rest gets random unit vectors (say which when you quote numbers).

Printed: embedder throughput on ~2 MB (ours vs WordLlama's own ``embed``), index build
figures, and p50/p95 latency of vector query, BM25 text search and full hybrid search
(query embedding included), plus LanceDB's own brute-force vector query for comparison.
Hybrid search asks both halves for candidates without their texts, then reads the texts of
the final hits only: the "without texts" rows show what its halves cost. Then the vector
half's two paths alone (float32 product; native int8 shortlist + float32 rescoring) and how
often their top-50 lists agree.
Goal: hybrid search p50 <= 20 ms at 100K chunks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import lancedb
import numpy as np
from numpy.typing import NDArray

from tasks.embedding.local_embedder import LocalEmbedder
from tasks.records import Chunk
from tasks.search.hybrid import hybrid_search
from tasks.tokens.code_tokens import code_tokens
from tasks.vectors.lance_store import LanceStore, vectors_of
from tasks.vectors.lance_tables import table_name
from tasks.vectors.vector_scan import VectorScan

WINDOW = 1500
NAMESPACE = "bench/stdlib@main"
QUERIES = [
    "parse json configuration file",
    "HTTPServer serve_forever",
    "read csv rows into dictionaries",
    "compute sha256 digest of a file",
    "getaddrinfo",
    "thread pool executor submit future",
    "decode base64 string",
    "walk a directory tree recursively",
    "OrderedDict move_to_end",
    "format a datetime as iso string",
    "send an email over smtp",
    "compress data with zlib",
    "parse command line arguments",
    "ZipFile extractall",
    "regular expression compile flags",
    "unittest assertRaises context manager",
    "heapq nlargest",
    "retry connection after timeout",
    "SSLContext load_cert_chain",
    "temporary directory cleanup",
]


STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    return sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)


def windows(files: list[Path], offset: int) -> Iterator[Chunk]:
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(STDLIB).as_posix()
        for start in range(offset, len(text), WINDOW):
            piece = text[start : start + WINDOW]
            line = text.count("\n", 0, start) + 1
            yield Chunk(rel, "python", line, line + piece.count("\n"), piece, None, "window")


def corpus(rows: int) -> list[Chunk]:
    files = stdlib_files()
    chunks: list[Chunk] = []
    for offset in (0, 750, 375, 1125, 190, 560, 940, 1310):
        for chunk in windows(files, offset):
            chunks.append(chunk)
            if len(chunks) == rows:
                return chunks
    return chunks


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.95)] * 1000


def timed(fn: Callable[[str], object], queries: list[str]) -> tuple[float, float]:
    fn(queries[0])
    samples = []
    for query in queries:
        start = time.perf_counter()
        fn(query)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def embedder_throughput(embedder: LocalEmbedder, chunks: list[Chunk]) -> list[str]:
    sample, size = [], 0
    for chunk in chunks:
        sample.append(chunk.text)
        size += len(chunk.text.encode())
        if size >= 2_000_000:
            break
    start = time.perf_counter()
    embedder.embed(sample)
    ours = time.perf_counter() - start
    from tasks.embedding.local_embedder import load_stock_wordllama

    model = load_stock_wordllama()
    start = time.perf_counter()
    model.embed(sample, norm=True)
    theirs = time.perf_counter() - start
    mb = size / 1e6
    return [
        f"embedder sample: {len(sample)} chunks, {mb:.2f} MB of stdlib Python",
        f"LocalEmbedder:          {len(sample) / ours:8.0f} chunks/s {mb / ours:6.2f} MB/s",
        f"WordLlama.embed (peer): {len(sample) / theirs:8.0f} chunks/s {mb / theirs:6.2f} MB/s",
    ]


def build(
    store: LanceStore, embedder: LocalEmbedder, chunks: list[Chunk], random_bulk: bool
) -> list[str]:
    rng = np.random.default_rng(7)
    batch, embed_s, write_s = 5000, 0.0, 0.0
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        t0 = time.perf_counter()
        if random_bulk and start >= batch:
            vectors = rng.standard_normal((len(part), embedder.dimensions), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        else:
            vectors = embedder.embed([c.text for c in part])
        t1 = time.perf_counter()
        store.upsert(NAMESPACE, part, vectors)
        embed_s, write_s = embed_s + t1 - t0, write_s + time.perf_counter() - t1
    t0 = time.perf_counter()
    store.optimize(NAMESPACE)
    optimize_s = time.perf_counter() - t0
    return [
        f"rows: {store.count(NAMESPACE)} ({'random bulk vectors' if random_bulk else 'all real'})",
        f"embed {embed_s:.1f} s, upsert (batches of {batch}, incl. tokens) {write_s:.1f} s, "
        f"optimize {optimize_s:.2f} s",
    ]


def latency_table(
    store: LanceStore, directory: str, embedder: LocalEmbedder, queries: list[str]
) -> list[str]:
    vectors = {q: embedder.embed([q])[0] for q in queries}
    t0 = time.perf_counter()
    store.query(NAMESPACE, vectors[queries[0]], 50)
    load_s = time.perf_counter() - t0
    lance_only = LanceStore(directory, embedder.dimensions, cache_vectors=False)
    rows = {
        "vector query (matrix, k=50)": timed(
            lambda q: store.query(NAMESPACE, vectors[q], 50), queries
        ),
        "vector query, without texts": timed(
            lambda q: store.query(NAMESPACE, vectors[q], 50, with_text=False), queries
        ),
        "text_search BM25 (k=50)": timed(
            lambda q: store.text_search(NAMESPACE, code_tokens(q), 50), queries
        ),
        "text_search, without texts": timed(
            lambda q: store.text_search(NAMESPACE, code_tokens(q), 50, with_text=False), queries
        ),
        "hybrid_search (k=10, embed incl.)": timed(
            lambda q: hybrid_search(q, store=store, embedder=embedder, namespace=NAMESPACE),
            queries,
        ),
        "query embedding only": timed(lambda q: embedder.embed([q]), queries),
        "LanceDB brute-force vector (k=50)": timed(
            lambda q: lance_only.query(NAMESPACE, vectors[q], 50), queries[:20]
        ),
    }
    lines = [f"first query (loads the vector matrix): {load_s * 1000:.0f} ms"]
    lines.append(f"{'operation':<36}{'p50 ms':>9}{'p95 ms':>9}")
    lines += [f"{name:<36}{p50:>9.2f}{p95:>9.2f}" for name, (p50, p95) in rows.items()]
    return lines


def _top50(scan: VectorScan, vectors: dict[str, NDArray[np.float32]], query: str) -> object:
    return scan.top(vectors[query], 50)


def shortlist_table(directory: str, embedder: LocalEmbedder, chunks: list[Chunk]) -> list[str]:
    """The vector half's two paths over the table's own vectors: the float32 product alone,
    and the native int8 shortlist + float32 rescoring that search uses; how often their
    top-50 lists are identical, over the benchmark's queries and 500 chunks' first lines."""
    table = lancedb.connect(directory).open_table(table_name(NAMESPACE))
    matrix = vectors_of(table.to_lance().to_table(columns=["vector"]), embedder.dimensions)
    exact = VectorScan(matrix, shortlist_min_rows=sys.maxsize)
    t0 = time.perf_counter()
    scan = VectorScan(matrix)
    build_ms = (time.perf_counter() - t0) * 1000
    if not scan.shortlists:
        return ["int8 shortlist: off (the native extension is not built or CODEFLOW_NATIVE=0)"]
    picks = np.random.default_rng(7).choice(len(chunks), 500, replace=False)
    texts = QUERIES + [chunks[i].text.strip().splitlines()[0][:120] or "x" for i in picks]
    queries = dict(zip(texts, embedder.embed(texts), strict=True))
    same = sum(exact.top(v, 50)[0] == scan.top(v, 50)[0] for v in queries.values())
    lines = [
        f"int8 shortlist: built in {build_ms:.0f} ms; top-50 identical to the float32 product "
        f"for {same} of {len(queries)} queries",
        f"{'vector half alone (k=50)':<36}{'p50 ms':>9}{'p95 ms':>9}",
    ]
    for name, path in [("float32 product", exact), ("int8 shortlist + rescoring", scan)]:
        p50, p95 = timed(partial(_top50, path, queries), texts)
        lines.append(f"{name:<36}{p50:>9.2f}{p95:>9.2f}")
    return lines


def maintenance(store: LanceStore, embedder: LocalEmbedder, chunks: list[Chunk]) -> list[str]:
    victims = [c.id for c in chunks[:2500]]
    t0 = time.perf_counter()
    store.delete(NAMESPACE, victims)
    delete_s = time.perf_counter() - t0
    part = chunks[:1000]
    vectors = embedder.embed([c.text for c in part])
    t0 = time.perf_counter()
    store.upsert(NAMESPACE, part, vectors)
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.query(NAMESPACE, vectors[0], 10)
    reload_s = time.perf_counter() - t0
    return [
        f"delete 2,500 ids: {delete_s * 1000:.0f} ms; "
        f"upsert 1,000 chunks: {upsert_s * 1000:.0f} ms; "
        f"next query (matrix reload): {reload_s * 1000:.0f} ms",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--random-bulk", action="store_true")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    embedder = LocalEmbedder()
    print(f"LocalEmbedder load (incl. import): {time.perf_counter() - t0:.2f} s")
    chunks = corpus(args.rows)
    print(*embedder_throughput(embedder, chunks), sep="\n")
    queries = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
    with tempfile.TemporaryDirectory(prefix="codeflow-search-bench-") as directory:
        store = LanceStore(directory, embedder.dimensions)
        print(*build(store, embedder, chunks, args.random_bulk), sep="\n")
        print(*latency_table(store, directory, embedder, queries), sep="\n")
        print(*shortlist_table(directory, embedder, chunks), sep="\n")
        print(*maintenance(store, embedder, chunks), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

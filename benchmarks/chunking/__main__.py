"""Chunking throughput: how much "load & chunk" adds next to embedding.

    .venv/bin/python -m benchmarks.chunking [DIR ...] [--repeat 3]

Default corpora: the running interpreter's standard library (without site-packages) and,
when installed, the ``prefect`` package (PrefectHQ's own source, the corpus of the
FIELD-NOTES embedding figures). Every regular file is read into memory first (reading is
not measured), with repo-relative paths, so skips (binary, vendored, minified...) are
exercised too. Printed per corpus: files, MB, chunks, skips, best-of-N seconds, MB/s,
chunks/s, and the same figures for Python files alone, for the outline scan alone (the
syntax-aware part, ``tasks.index.python_outline``), for ``ast.parse`` alone (what the outline
replaced:
the chunker parsed every module until 2026-11) and for the generic splitter alone (every
file as plain text).
Rates use CPU time (steadier than wall time on a shared machine; both are printed). The
last column puts that time next to WordLlama's ~1.7 MB/s on this kind of machine. Goal:
well under 2 s per 10 MB of Python.
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmarks.chunking import parse_quietly
from tasks.index.chunking import ChunkingPolicy, Skip, chunk_file, chunk_files, chunk_text
from tasks.index.languages import decode_source
from tasks.index.python_outline import outline

EMBED_MB_PER_S = 1.7
Files = list[tuple[str, bytes]]


def default_corpora() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    prefect = Path(sysconfig.get_paths()["purelib"]) / "prefect"
    return [p for p in (stdlib, prefect) if p.is_dir()]


def read_corpus(root: Path) -> Files:
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("site-packages/") or path.is_symlink() or not path.is_file():
            continue
        files.append((rel, path.read_bytes()))
    return files


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, float, int]:
    """Best wall-clock and best CPU seconds of ``repeat`` runs (CPU time is the steadier
    figure on a shared machine), and what ``fn`` counted."""
    walls, cpus, count = [], [], 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        count = fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return min(walls), min(cpus), count


def parse_all(files: Files) -> int:
    for _, data in files:
        parse_quietly(decode_source(data))
    return 0


def outline_all(files: Files) -> int:
    return sum(len(outline(decode_source(data)) or ()) for _, data in files)


def chunk_count(files: Files, policy: ChunkingPolicy) -> int:
    return len(chunk_files(files, policy)[0])


def generic(texts: list[tuple[str, str]], policy: ChunkingPolicy) -> int:
    return sum(len(chunk_text(path, text, "text", policy)) for path, text in texts)


def row(
    corpus: str, what: str, files: Files, timing: tuple[float, float, int]
) -> dict[str, object]:
    wall, cpu, chunks = timing
    megabytes = sum(len(data) for _, data in files) / 1e6
    return {
        "corpus": corpus,
        "what": what,
        "files": len(files),
        "MB": round(megabytes, 1),
        "chunks": chunks or "",
        "wall s": round(wall, 3),
        "cpu s": round(cpu, 3),
        "MB/s (cpu)": round(megabytes / cpu, 1),
        "s per 10 MB": round(10 * cpu / megabytes, 2),
        "chunks/s": int(chunks / cpu) if chunks else "",
        "% of embed time": round(100 * cpu / (megabytes / EMBED_MB_PER_S), 1),
    }


def bench_corpus(root: Path, repeat: int, policy: ChunkingPolicy) -> list[dict[str, object]]:
    files = read_corpus(root)
    name = root.name
    kept = [(p, d) for p, d in files if not isinstance(chunk_file(p, d, policy), Skip)]
    python = [(p, d) for p, d in kept if p.endswith(".py")]
    texts = [(p, decode_source(d)) for p, d in kept]
    skipped = f"all files ({len(files) - len(kept)} skipped)"
    return [
        row(name, skipped, files, best_of(repeat, lambda: chunk_count(files, policy))),
        row(name, "kept files", kept, best_of(repeat, lambda: chunk_count(kept, policy))),
        row(name, "python files", python, best_of(repeat, lambda: chunk_count(python, policy))),
        row(name, "  outline alone", python, best_of(repeat, lambda: outline_all(python))),
        row(name, "  ast.parse alone", python, best_of(repeat, lambda: parse_all(python))),
        row(name, "generic splitter, kept", kept, best_of(repeat, lambda: generic(texts, policy))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policy = ChunkingPolicy()
    rows = []
    for root in args.dirs or default_corpora():
        rows.extend(bench_corpus(root, args.repeat, policy))
    pd.set_option("display.width", 200)
    table = pd.DataFrame(rows)
    print(f"chunking throughput, best of {args.repeat}, budget {policy.max_chunk_chars} chars")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()

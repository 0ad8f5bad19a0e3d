"""Vectorize benchmark: cold index vs the embedder's own time over the same text, no-op
re-index, incremental re-index of 100 changed files, and embedding-cache hits on the next
commit. Runs the real flow (ephemeral Prefect, embedded Redis, LanceDB, local embedder).

    .venv/bin/python -m benchmarks.vectorize.run [--source DIR] [--files N]

The corpus is copied from DIR (default: the installed ``prefect`` package's Python source)
into a fresh git repository. Figures are the flow's own ``duration_s`` (inside the flow).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from tests.git_support import commit_all, git


def build_corpus(source: Path, target: Path, limit: int) -> list[Path]:
    files = sorted(p for p in source.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)[
        :limit
    ]
    for path in files:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    git(target, "init", "-q")
    commit_all(target, "corpus")
    return [target / p.relative_to(source) for p in files]


def main() -> None:
    import prefect

    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path(prefect.__file__).parent)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="codeflow-vbench-"))
    os.environ["CODEFLOW_HOME"] = str(work / "home")
    from config import load_settings
    from config.prefect_env import apply_prefect_environment

    apply_prefect_environment(load_settings())
    from flows.vectorize import vectorize_repository
    from tasks.runtime import runtime

    repo = work / "repo"
    repo.mkdir()
    files = build_corpus(args.source, repo, args.files)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    rows = {}
    cold = vectorize_repository(str(repo))
    rows["cold index"] = cold
    rows["no-op re-index"] = vectorize_repository(str(repo))
    for path in files[:100]:
        path.write_text(path.read_text() + "\n\ndef added_helper():\n    return 42\n")
    commit_all(repo, "edit 100 files")
    rows["100 changed files"] = vectorize_repository(str(repo))
    embedder = runtime(load_settings()).embedder
    from tasks.chunking import chunk_files

    chunks, _ = chunk_files((str(p.relative_to(repo)), p.read_bytes()) for p in files)
    start = time.perf_counter()
    for i in range(0, len(chunks), 512):
        embedder.embed([c.text for c in chunks[i : i + 512]])
    bound = time.perf_counter() - start
    table = pd.DataFrame(
        {
            name: {
                "duration_s": r["duration_s"],
                "files_changed": r["files_changed"],
                "chunks_embedded": r["chunks_embedded"],
                "cache_hits": r["cache_hits"],
                "cache hit %": round(
                    100 * r["cache_hits"] / max(1, r["cache_hits"] + r["chunks_embedded"]), 1
                ),
            }
            for name, r in rows.items()
        }
    ).T
    print(f"corpus: {len(files)} files, {megabytes:.1f} MB, {cold['chunks_total']} chunks")
    print(table.to_string())
    print(f"embedder alone over the same chunks: {bound:.2f} s")
    print(
        f"cold index / embedder bound: {cold['duration_s'] / bound:.2f}x; "
        f"{len(files) / cold['duration_s']:.0f} files/s"
    )
    print("peer (LlamaIndex IngestionPipeline): not run here; see benchmarks/RESULTS.md")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

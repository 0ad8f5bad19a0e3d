"""Vectorize benchmark: cold index (files/s, MB/s, against the embedder's own time over the
same text), no-op re-index, incremental re-index of 100 changed files, and embedding-cache
hits on that next commit. Runs the real flow (ephemeral Prefect, embedded Redis, LanceDB,
local embedder, worker processes), then the peer, LlamaIndex's IngestionPipeline, on the
same files with the same embedder.

    .venv/bin/python -m benchmarks.vectorize [--source DIR] [--files N] [--no-peer]

The corpus: ``--files`` (default 10,000) Python files of DIR (default: this interpreter's
site-packages, every installed package's source, sorted by path; files codeflow skips by
path or size are left out so both sides index the same files) copied into a fresh git
repository with history: the import, then ``HISTORY`` commits that each edit 100 files.
The benchmark's own "next commit" edits 100 other files. codeflow's figures are the
flow's own ``duration_s`` (inside the flow). The peer runs in its own process on a plain
copy of the same files, against a private redis-server (see ``peer_llamaindex.py`` for its
configuration and what its durations cover). Its packages are not in any extra, because
``llama-index-storage-*-redis`` pin ``redis<6`` (codeflow needs redis 8); install them with:

    uv pip install llama-index-core llama-index-vector-stores-lancedb tree-sitter \
        tree-sitter-python
    uv pip install --no-deps llama-index-storage-kvstore-redis \
        llama-index-storage-docstore-redis
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.vectorize.bounds import (
    embedder_seconds,
    python_path_seconds,
    wordllama_seconds,
)
from benchmarks.vectorize.site_packages import (
    EDITED_FILES,
    MAX_BYTES,
    append_helper,
    build_corpus,
    corpus_texts,
)
from tests.git_support import commit_all

PEER_TIMEOUT_S = 600
PEER_MODULES = (
    "llama_index.core",
    "llama_index.vector_stores.lancedb",
    "llama_index.storage.docstore.redis",
    "tree_sitter_python",
)
ROWS = ("cold index", "no-op re-index", "100 changed files")


def run_codeflow(repo: Path, files: list[Path]) -> dict[str, dict[str, Any]]:
    from config import load_settings
    from flows.vectorize import vectorize_repository
    from tasks.backends import check_backends
    from tasks.services import services_for

    check_backends(services_for(load_settings()))  # as `codeflow index` does before its flow
    rows = {"cold index": vectorize_repository(str(repo))}
    rows["no-op re-index"] = vectorize_repository(str(repo))
    for path in files[:EDITED_FILES]:
        append_helper(path)
    commit_all(repo, "edit 100 files")
    rows["100 changed files"] = vectorize_repository(str(repo))
    return rows


def run_peer(corpus: Path, edited: list[str], work: Path) -> dict[str, Any]:
    """LlamaIndex in a child process on ``corpus``, with its own redis-server."""
    from benchmarks.common import redis_server

    edits = work / "peer-edits.txt"
    edits.write_text("\n".join(edited))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # LlamaIndex's ingestion cache keeps each run's nodes as ONE Redis value; over 10K
    # files that exceeds Redis's default 512 MB limit and the server drops the connection.
    with redis_server("--proto-max-bulk-len", "4gb", "--client-query-buffer-limit", "4gb") as url:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.vectorize.peer_llamaindex", "--corpus",
             str(corpus), "--redis-url", url, "--lance", str(work / "peer-lance"),
             "--edits", str(edits)],
            env=env, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"failed": f"exit {done.returncode}: {tail[0]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def reuse_percent(row: dict[str, Any]) -> float:
    """Of the chunks of the files a run (re)loaded, the share it did not embed: found in
    the embedding cache, or already stored unchanged (same place, same text)."""
    reused = int(row["cache_hits"]) + int(row.get("chunks_unchanged", 0))
    return round(100 * reused / max(1, reused + int(row["chunks_embedded"])), 1)


def rate(files: int, seconds: float) -> float | str:
    return round(files / seconds) if files and seconds else "-"


def peer_note(row: dict[str, Any]) -> str:
    """The table's word on a peer run that failed, or half-failed (FIELD-NOTES' traps)."""
    if "error" in row:
        return f"failed: {row['error'].split('. ')[0][:72]}"
    if "delete_error" in row:
        return f"delete failed: {row['delete_error'].split('. ')[0][:72]}"
    return ""


def build_table(
    ours: dict[str, dict[str, Any]], peer: dict[str, Any], bounds: dict[str, float]
) -> pd.DataFrame:
    table = {}
    for name in ROWS:
        r = ours[name]
        fallback = {"error": peer["failed"]} if "failed" in peer else {}
        theirs = peer.get("rows", {}).get(name, fallback)
        seconds = theirs.get("duration_s")
        files = r["files_changed"]
        table[name] = {
            "codeflow s": r["duration_s"],
            "LlamaIndex s": seconds if seconds is not None else "-",
            "peer/codeflow": round(seconds / r["duration_s"], 1) if seconds else "-",
            "embedder alone s": round(bounds.get(name, 0.0), 2),
            "codeflow files/s": rate(files, r["duration_s"]),
            "LlamaIndex files/s": rate(files, seconds) if seconds else "-",
            "codeflow chunks embedded": r["chunks_embedded"],
            "not embedded % (changed files)": reuse_percent(r),
            "not re-embedded % (all chunks)": round(
                100 * (1 - r["chunks_embedded"] / max(1, r["chunks_total"])), 1
            ),
            "LlamaIndex chunks embedded": theirs.get("chunks", "-"),
            "peer note": peer_note(theirs),
        }
    return pd.DataFrame(table).T


def peer_status(enabled: bool) -> str | None:
    """Why the peer is not run, or None when it is."""
    if not enabled:
        return "peer: skipped (--no-peer)"
    try:
        missing = [name for name in PEER_MODULES if importlib.util.find_spec(name) is None]
    except ModuleNotFoundError:  # a parent package (llama_index itself) is absent
        missing = [PEER_MODULES[0]]
    if missing:
        return f"peer: not installed (see this module's docstring; missing {', '.join(missing)})"
    return None


def print_report(
    corpus: str,
    megabytes: float,
    ours: dict[str, dict[str, Any]],
    peer: dict[str, Any],
    bounds: dict[str, float],
    rss_or_skip: str,
) -> None:
    cold = ours["cold index"]
    print(f"{corpus}, {cold['chunks_total']} chunks (codeflow)")
    print(build_table(ours, peer, bounds).to_string())
    seconds = cold["duration_s"]
    print(
        f"cold index: {cold['files_changed'] / seconds:.0f} files/s, {megabytes / seconds:.2f} "
        f"MB/s; the embedder alone over the same chunks: {bounds['cold index']:.2f} s on "
        f"every core ({bounds['cold index, one process']:.2f} s in one process); cold index "
        f"/ embedder: {seconds / bounds['cold index']:.2f}x"
    )
    from tasks.native_extension import native_available

    print(
        f"the embedder's tokenizer and pooling: {'native' if native_available() else 'Python'}"
        f"; the Python path alone on every core: {bounds['python path']:.2f} s"
    )
    stock = bounds["wordllama embed()"]
    print(
        f"WordLlama's own embed() over the same chunks on every core: {stock:.2f} s; cold "
        f"index / WordLlama's embed(): {seconds / stock:.2f}x"
    )
    if rss_or_skip.startswith("peer:"):
        print(rss_or_skip)
        return
    peer_rss = peer.get("peak_rss_mb", "-")
    print(f"peak RSS: codeflow process {rss_or_skip} (its 3 flow runs), LlamaIndex {peer_rss} MB")
    for name, row in peer.get("rows", {}).items():
        print(f"LlamaIndex {name}: {row.get('rows_stored', '-')} rows in its LanceDB table after")
        if "error" in row:
            print(f"  failed: {row['error']}")
        if "delete_error" in row:
            print(f"  delete failed: {row['delete_error']}")
            print("  (timed with the same delete written with a string literal; see peer module)")
    if "failed" in peer:
        print(f"peer failed: {peer['failed']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument(
        "--max-kb", type=int, default=MAX_BYTES // 1000, help="leave out larger files"
    )
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    return parser.parse_args()


def run_all(args: argparse.Namespace, work: Path) -> None:
    repo, peer_corpus = work / "repo", work / "peer-corpus"
    repo.mkdir()
    files = build_corpus(args.source, repo, args.files, args.max_kb * 1000)
    shutil.copytree(repo, peer_corpus, ignore=shutil.ignore_patterns(".git"))
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    ours = run_codeflow(repo, files)
    ours_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from tasks.embedding.cpu_workers import default_workers

    texts = corpus_texts(repo, files)
    bounds = {
        "cold index": embedder_seconds(texts, default_workers()),
        "cold index, one process": embedder_seconds(texts, 0),
        "python path": python_path_seconds(texts, default_workers()),
        "wordllama embed()": wordllama_seconds(texts, default_workers()),
        "100 changed files": embedder_seconds(corpus_texts(repo, files[:EDITED_FILES]), 0),
    }
    skipped = peer_status(args.peer)
    edited = [str(p.relative_to(repo)) for p in files[:EDITED_FILES]]
    peer = {} if skipped else run_peer(peer_corpus, edited, work)
    corpus = f"corpus: {len(files)} files of at most {args.max_kb} KB, {megabytes:.1f} MB"
    print_report(corpus, megabytes, ours, peer, bounds, skipped or f"{ours_rss_mb:.0f} MB")


def main() -> None:
    args = parse_args()
    from benchmarks.common import codeflow_home

    with codeflow_home("codeflow-vbench-") as work:
        run_all(args, work)


if __name__ == "__main__":
    main()

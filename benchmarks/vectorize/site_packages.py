"""The vectorize benchmarks' corpus: installed Python sources copied into a git repository
with history, and the edit the "100 changed files" run makes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.git_support import commit_all, git

EDITED_FILES = 100
HISTORY = 3
MAX_BYTES = 1_000_000  # codeflow's default CODEFLOW_MAX_FILE_BYTES


def corpus_files(source: Path, limit: int, max_bytes: int = MAX_BYTES) -> list[Path]:
    """Up to ``limit`` Python files of ``source`` that codeflow would not skip by path and
    that hold at most ``max_bytes``."""
    from tasks.index.chunking import ChunkingPolicy, skip_reason_for_path

    policy = ChunkingPolicy()
    found = []
    for path in sorted(source.rglob("*.py")):
        rel = path.relative_to(source).as_posix()
        if "__pycache__" in path.parts or not path.is_file() or path.is_symlink():
            continue
        if skip_reason_for_path(rel, policy) is None and path.stat().st_size <= max_bytes:
            found.append(path)
            if len(found) == limit:
                break
    return found


def build_corpus(source: Path, target: Path, limit: int, max_bytes: int = MAX_BYTES) -> list[Path]:
    """The corpus as a git repository with history; returns its files in the repository."""
    files = corpus_files(source, limit, max_bytes)
    for path in files:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    git(target, "init", "-q")
    commit_all(target, "import the corpus")
    copies = [target / p.relative_to(source) for p in files]
    for n in range(HISTORY):  # earlier history: other files than the benchmark edits
        for path in copies[-(n + 1) * EDITED_FILES :][:EDITED_FILES]:
            path.write_text(path.read_text() + f"\n\nHISTORY_{n} = {n}\n")
        commit_all(target, f"history {n}")
    return copies


def append_helper(path: Path) -> None:
    """The edit both sides see in the "100 changed files" run."""
    path.write_text(path.read_text() + "\n\ndef added_helper():\n    return 42\n")


def corpus_texts(repo: Path, files: list[Path]) -> list[str]:
    from tasks.index.chunking import chunk_files

    chunks, _ = chunk_files((p.relative_to(repo).as_posix(), p.read_bytes()) for p in files)
    return [c.text for c in chunks]


def flow_batches(texts: list[str], size: int = 2048) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]

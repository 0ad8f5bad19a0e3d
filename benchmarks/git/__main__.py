"""Benchmark steps 1-2 of the vectorization pipeline: fingerprint and change detection.

Builds a throw-away repository of N files (default 10,000, ~40 per folder), commits it,
then times :meth:`GitRepository.fingerprint` on the clean tree (the no-op re-index path,
budget 0.5 s for the whole flow) and with 100 edited + 20 untracked files, and
:func:`diff_manifests` on 10K-path manifests. Prints p50/p90 of several runs.

    .venv/bin/python -m benchmarks.git [--files 10000] [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tasks.index.changes import diff_manifests
from tasks.repo.git_repository import GitRepository


def build_repo(root: Path, n_files: int) -> None:
    """Write ``n_files`` small Python files in nested folders and commit them."""
    for i in range(n_files):
        folder = root / f"pkg{i // 400}" / f"mod{(i // 40) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file_{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    (root / ".codeflowignore").write_text("vendor/\n*.min.js\n")
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.email", "bench@example.com"], check=True)
    subprocess.run([*git, "config", "user.name", "bench"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], check=True)
    subprocess.run([*git, "status", "-s"], check=True, capture_output=True)  # refresh index


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.9))]


def dirty_tree(root: Path) -> None:
    files = sorted(root.glob("pkg0/*/*.py"))[:100]
    for path in files:
        path.write_text(path.read_text() + "# edited\n")
    for i in range(20):
        (root / f"new_{i}.py").write_text(f"NEW = {i}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="codeflow-bench-git-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build_repo(root, args.files)
        print(f"built {args.files} files in {time.perf_counter() - t0:.1f} s")
        with GitRepository.open(root) as repo:
            clean = repo.fingerprint()
            rows.append(("fingerprint, clean tree", *timed(repo.fingerprint, args.runs)))
            rows.append(("open + fingerprint, clean", *timed(lambda: _open_fp(root), args.runs)))
            dirty_tree(root)
            dirty = repo.fingerprint()
            rows.append(("fingerprint, 100 edited + 20 new", *timed(repo.fingerprint, args.runs)))
        same = dict(clean.files)
        rows.append(
            (
                "diff_manifests, no change",
                *timed(lambda: diff_manifests(clean.files, same), args.runs),
            )
        )
        rows.append(
            (
                "diff_manifests, 120 changes",
                *timed(lambda: diff_manifests(clean.files, dirty.files), args.runs),
            )
        )
        renamed = {f"moved/{p}": s for p, s in clean.files.items()}
        rows.append(
            (
                "diff_manifests, all renamed",
                *timed(lambda: diff_manifests(clean.files, renamed), args.runs),
            )
        )
    print(f"\nfiles in manifest: {len(clean.files)}, dirty after edits: {len(dirty.dirty)}")
    print(f"{'operation':<36} {'p50 ms':>9} {'p90 ms':>9}")
    for name, p50, p90 in rows:
        print(f"{name:<36} {p50 * 1000:>9.1f} {p90 * 1000:>9.1f}")


def _open_fp(root: Path) -> None:
    with GitRepository.open(root) as repo:
        repo.fingerprint()


if __name__ == "__main__":
    main()

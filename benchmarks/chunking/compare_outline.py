"""The outline scan against ``ast`` over whole source trees: every ``*.py`` file under the
given folders (default: this interpreter's standard library and site-packages).

    .venv/bin/python -m benchmarks.chunking.compare_outline [DIR ...]

Prints how many files were compared, how many ``ast`` rejects (not compared), the first
differences if any, and the seconds each side took.
"""

from __future__ import annotations

import sys
import sysconfig
import time
from pathlib import Path

from benchmarks.chunking import parse_quietly
from tasks.index.languages import decode_source
from tasks.index.python_outline import outline
from tests.unit.test_pyoutline import ast_outline


def main() -> None:
    paths = sysconfig.get_paths()
    roots = [Path(a) for a in sys.argv[1:]] or [Path(paths["stdlib"]), Path(paths["purelib"])]
    files = sorted({p for root in roots for p in root.rglob("*.py") if p.is_file()})
    texts = [(p, decode_source(p.read_bytes())) for p in files]
    start = time.perf_counter()
    ours = [outline(text) for _, text in texts]
    scan_s = time.perf_counter() - start
    compared = rejected = differ = 0
    parse_s = 0.0
    for (path, text), found in zip(texts, ours, strict=True):
        start = time.perf_counter()
        tree = parse_quietly(text)
        parse_s += time.perf_counter() - start
        if tree is None:
            rejected += 1
            continue
        compared += 1
        if found != ast_outline(tree.body):
            differ += 1
            print(f"differs: {path}")
    megabytes = sum(len(text) for _, text in texts) / 1e6
    print(
        f"{len(texts)} files, {megabytes:.1f} MB: {compared} compared, {rejected} rejected by "
        f"ast, {differ} differ; outline {scan_s:.1f} s, ast.parse {parse_s:.1f} s"
    )


if __name__ == "__main__":
    main()

"""Chunking benchmarks: the chunker's throughput, and the Python outline against ``ast``."""

from __future__ import annotations

import ast
import warnings


def parse_quietly(text: str) -> ast.Module | None:
    """``ast.parse`` without the repository code's warnings; None when it does not parse."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError, RecursionError):
            return None

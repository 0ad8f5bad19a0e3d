"""The search-quality benchmark's pure parts: ranking metrics and docstring stripping."""

from __future__ import annotations

import ast
import math

import pytest

from benchmarks.quality import (
    Target,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    relevance_flags,
    strip_docstrings,
    summary,
)


def test_metrics_of_a_single_relevant_hit_at_rank_three() -> None:
    flags = [False, False, True, False]
    assert mrr_at_k(flags, 10) == pytest.approx(1 / 3)
    assert ndcg_at_k(flags, 10) == pytest.approx(1 / math.log2(4))  # = 0.5
    assert recall_at_k(flags, 10) == 1.0


def test_a_hit_below_k_counts_for_nothing() -> None:
    flags = [False, False, True]
    assert mrr_at_k(flags, 2) == 0.0
    assert ndcg_at_k(flags, 2) == 0.0
    assert recall_at_k(flags, 2) == 0.0


def test_metrics_with_two_relevant_items() -> None:
    flags = [True, False, True]
    # DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3) = 1.6309...
    assert ndcg_at_k(flags, 10, relevant=2) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert recall_at_k(flags, 10, relevant=2) == 1.0
    assert recall_at_k(flags, 2, relevant=2) == 0.5
    assert mrr_at_k(flags, 10) == 1.0


def test_empty_ranking_scores_zero() -> None:
    assert (mrr_at_k([], 10), ndcg_at_k([], 10), recall_at_k([], 10)) == (0.0, 0.0, 0.0)


def test_relevance_needs_the_same_file_and_overlapping_lines_and_counts_once() -> None:
    target = Target("pkg/mod.py", 10, 20)
    hits = [
        ("pkg/other.py", 10, 20),  # other file
        ("pkg/mod.py", 1, 9),  # ends just before
        ("pkg/mod.py", 18, 30),  # overlaps: first relevant
        ("pkg/mod.py", 5, 12),  # overlaps too, but the function was already found
        ("pkg/mod.py", 21, 25),  # starts just after
    ]
    assert relevance_flags(hits, target) == [False, False, True, False, False]


def test_summary_is_the_first_paragraph_on_one_line() -> None:
    doc = """Read the settings file
    and merge it with the defaults.

    :param path: where it is
    """
    assert summary(doc) == "Read the settings file and merge it with the defaults."


SOURCE = '''"""Module docstring."""
import os


class Store:
    """A store
    of things."""

    @staticmethod
    def load(path: str) -> bytes:
        """Read the whole file at path and return its bytes.

        Raises OSError when it is missing.
        """
        with open(path, "rb") as handle:
            return handle.read()

    def abstract(self) -> None:
        """Subclasses must implement this method in their own way."""
        raise NotImplementedError


def tiny() -> int:
    """Return one, briefly."""
    return 1


def inline() -> int: """Return one, documented on the line of its header."""; return 1
'''


def test_strip_docstrings_removes_them_and_records_the_functions_lines() -> None:
    stripped, functions = strip_docstrings(SOURCE)
    tree = ast.parse(stripped)
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    assert all(ast.get_docstring(n) is None for n in ast.walk(tree) if isinstance(n, owners))
    assert '"""' not in stripped
    lines = stripped.splitlines()
    assert lines[:4] == ["import os", "", "", "class Store:"]
    by_name = {f.symbol: f for f in functions}
    # the stub (only raises NotImplementedError) and the short summary are not queries
    assert set(by_name) == {"Store.load", "inline"}
    load = by_name["Store.load"]
    assert load.query == "Read the whole file at path and return its bytes."
    assert (load.start_line, load.end_line) == (6, 9)
    assert lines[load.start_line - 1].strip() == "@staticmethod"
    assert lines[load.end_line - 1].strip() == "return handle.read()"
    inline = by_name["inline"]
    assert lines[inline.start_line - 1] == "def inline() -> int: pass; return 1"
    assert inline.end_line == inline.start_line


def test_a_body_made_only_of_a_docstring_becomes_pass() -> None:
    stripped, _ = strip_docstrings('class Empty:\n    """Nothing\n    here."""\n\nx = 1\n')
    assert stripped == "class Empty:\n    pass\n\nx = 1\n"
    ast.parse(stripped)

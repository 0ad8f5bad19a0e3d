"""Search-quality benchmark: find a function from its docstring, with the docstring removed.

The pure parts live here (no I/O, importable by tests); ``run.py`` builds the corpus,
indexes it with the real flow and searches it.

* :func:`strip_docstrings` removes every docstring of a Python source (module, class,
  function) and returns the stripped source with each documented function's query and its
  line span *in the stripped source*. A docstring that is the only statement of its body
  becomes ``pass``; one on lines of its own is deleted with its lines; anything else is
  replaced by ``pass`` in place (so the result always parses).
* The query is the docstring's first paragraph (``inspect.cleandoc``, up to the first blank
  line), whitespace collapsed: the one-sentence summary a user would type, without the
  parameter lists and examples that follow. Functions whose summary has fewer than
  :data:`MIN_WORDS` words, starts like a field list or doctest, or whose body is only a
  stub (``pass``, ``...``, ``raise NotImplementedError``) are not queries.
* Relevance is binary and there is one relevant function per query: a hit is relevant when
  it is in the function's file and its lines overlap the function's; only the first such hit
  counts (:func:`relevance_flags`), so the metrics below are computed on those flags.

>>> flags = [False, True, False]
>>> mrr_at_k(flags, 10), recall_at_k(flags, 10)
(0.5, 1.0)
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

#: A summary shorter than this is usually a name restated ("Return the value.").
MIN_WORDS = 6

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_Def = ast.FunctionDef | ast.AsyncFunctionDef
_Owner = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True, slots=True)
class DocumentedFunction:
    """A query function: its summary and where it sits in the stripped source (1-based)."""

    symbol: str
    query: str
    start_line: int
    end_line: int


@dataclass(frozen=True, slots=True)
class Target:
    """What a query must find: the function's file and lines in the indexed copy."""

    path: str
    start_line: int
    end_line: int


def summary(docstring: str) -> str:
    """The first paragraph of ``docstring``, on one line."""
    paragraph = re.split(r"\n\s*\n", inspect.cleandoc(docstring).strip(), maxsplit=1)[0]
    return " ".join(paragraph.split())


def usable_query(text: str) -> bool:
    return len(text.split()) >= MIN_WORDS and not text.startswith((":", ">>>", "@", ".."))


def _docstring_node(owner: _Owner) -> ast.Expr | None:
    first = owner.body[0] if owner.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first
    return None


def _is_stub(body: Sequence[ast.stmt]) -> bool:
    """Nothing but ``pass``, ``...`` or ``raise NotImplementedError`` (after the docstring)."""
    if len(body) != 1:
        return not body
    only = body[0]
    if isinstance(only, ast.Pass):
        return True
    if isinstance(only, ast.Expr) and isinstance(only.value, ast.Constant):
        return True
    if isinstance(only, ast.Raise) and only.exc is not None:
        exc = only.exc.func if isinstance(only.exc, ast.Call) else only.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _functions(body: Sequence[ast.stmt], prefix: str = "") -> Iterator[tuple[str, _Def]]:
    """Top-level functions and methods (of nested classes too), with qualified names."""
    for node in body:
        if isinstance(node, _Def):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")


def _byte_cut(line: str, offset: int) -> tuple[str, str]:
    raw = line.encode("utf-8")
    return raw[:offset].decode("utf-8"), raw[offset:].decode("utf-8")


def _remove(lines: list[str], dropped: set[int], node: ast.Expr, only: bool) -> None:
    """Delete the docstring ``node`` from ``lines`` (0-based indexes go into ``dropped``)."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    prefix, _ = _byte_cut(lines[first], node.col_offset)
    _, suffix = _byte_cut(lines[last], node.end_col_offset or 0)
    trailing = suffix.strip()
    dropped.update(range(first + 1, last + 1))
    if not only and not prefix.strip() and (not trailing or trailing.startswith("#")):
        dropped.add(first)
    else:
        lines[first] = prefix + "pass" + suffix


def strip_docstrings(source: str) -> tuple[str, list[DocumentedFunction]]:
    """``source`` without docstrings, and its query functions with their stripped lines.

    Raises ``SyntaxError`` when ``source`` does not parse.
    """
    tree = ast.parse(source)
    lines = _LINE.findall(source)
    dropped: set[int] = set()
    for owner in ast.walk(tree):
        if isinstance(owner, _Owner) and (docstring := _docstring_node(owner)) is not None:
            _remove(lines, dropped, docstring, only=len(owner.body) == 1)
    kept = list(accumulate(0 if i in dropped else 1 for i in range(len(lines))))
    found = []
    for symbol, node in _functions(tree.body):
        doc = ast.get_docstring(node, clean=False)
        query = summary(doc) if doc else ""
        if not usable_query(query) or _is_stub(node.body[1:]):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        found.append(DocumentedFunction(symbol, query, kept[first - 1], kept[end - 1]))
    text = "".join(line for i, line in enumerate(lines) if i not in dropped)
    return text, found


# ---- relevance and metrics ---------------------------------------------------------------


def relevance_flags(hits: Sequence[tuple[str, int, int]], target: Target) -> list[bool]:
    """One flag per hit ``(path, start_line, end_line)``; only the first relevant is True."""
    flags, seen = [], False
    for path, start, end in hits:
        relevant = (
            not seen
            and path == target.path
            and start <= target.end_line
            and target.start_line <= end
        )
        seen = seen or relevant
        flags.append(relevant)
    return flags


def mrr_at_k(flags: Sequence[bool], k: int) -> float:
    """Reciprocal rank of the first relevant hit among the first ``k`` (0 if none)."""
    return next((1.0 / rank for rank, hit in enumerate(flags[:k], start=1) if hit), 0.0)


def ndcg_at_k(flags: Sequence[bool], k: int, relevant: int = 1) -> float:
    """Binary NDCG@k: DCG of the flags over the DCG of ``relevant`` hits ranked first."""
    dcg = sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(flags[:k], start=1) if hit)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(relevant, k) + 1))
    return dcg / ideal if ideal else 0.0


def recall_at_k(flags: Sequence[bool], k: int, relevant: int = 1) -> float:
    """Share of the ``relevant`` items found among the first ``k`` hits."""
    return sum(flags[:k]) / relevant if relevant else 0.0

"""AST pre-validation of untrusted Python: early, readable feedback. NOT a security boundary.

This policy is a courtesy. It tells a well-meaning author, before any container starts,
that their code imports ``subprocess`` or calls ``eval``, with the line and column. It can
be bypassed — Python is far too dynamic for a deny-list to be complete — and nothing in
codeflow relies on it for safety: the container (no network, read-only root, non-root
user, no capabilities, limits; see :mod:`tasks.sandbox.docker_runtime`) is the boundary, and the
adversarial test suite runs the classic bypasses with this layer switched off to prove it.

What it checks (each finding is a :class:`Violation` with a ``rule`` name):

* ``syntax``: the code must parse; a SyntaxError is reported, never skipped (fail closed);
* ``encoding``: only a UTF-8 source-encoding declaration (``# -*- coding: utf-7 -*-`` can
  hide code from a reader and from this very check);
* ``import``: denied modules (``os``, ``subprocess``, ``socket``, ``ctypes``, ``pickle``...);
* ``call``: references to ``eval``, ``exec``, ``compile``, ``__import__``, ``globals``... —
  as names, not only as calls, so ``f = eval`` and ``@exec`` decorators are caught;
* ``dynamic-attribute``: ``getattr``/``setattr``/``delattr``/``hasattr`` with a name that is
  not a string literal, or with a literal naming something denied;
* ``dunder``: attribute access to dunders outside a small allow-list (``__class__``,
  ``__subclasses__``, ``__globals__``, ``__mro__``, ``__code__``...), and frame/module
  internals (``f_globals``, ``gi_frame``, ``modules``...);
* ``format-string``: a string whose replacement fields reach attributes or items
  (``"{0.__class__}".format(x)``);
* ``decorator``: decorators that are not plain names, attributes or calls of them (a lambda
  or a string method used to smuggle a call);
* ``identifier``: non-ASCII identifiers that NFKC-normalize to a denied name (full-width
  ``eval`` spelled with U+FF45...: Python normalizes identifiers, a reader does not).

``open`` is allowed: programs legitimately read their input files, and the container
decides what is reachable.

>>> [v.rule for v in check_code("import os\\nprint(eval('1'))")]
['import', 'call']
"""

from __future__ import annotations

import ast
import io
import re
import string
import tokenize
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from tasks.sandbox.models import Violation

_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_UTF8 = {"utf-8", "utf8", "utf_8", "utf-8-sig"}


@dataclass(frozen=True, slots=True)
class Policy:
    """What the pre-validation refuses. Extend by building a new Policy; it is frozen."""

    denied_modules: frozenset[str] = frozenset(
        {
            "os", "posix", "nt", "subprocess", "socket", "ssl", "ctypes", "cffi", "pickle",
            "cPickle", "_pickle", "shelve", "marshal", "importlib", "imp", "builtins",
            "__builtin__", "shutil", "multiprocessing", "threading", "_thread", "signal",
            "pty", "fcntl", "resource", "mmap", "gc", "inspect", "code", "codeop", "runpy",
            "asyncio.subprocess", "selectors", "select", "urllib", "http", "ftplib",
            "smtplib", "telnetlib", "xmlrpc", "socketserver", "webbrowser", "sysconfig",
            "zipimport", "pkgutil", "_posixsubprocess",
        }
    )  # fmt: skip
    denied_calls: frozenset[str] = frozenset(
        {
            "eval", "exec", "compile", "__import__", "globals", "locals", "vars",
            "breakpoint", "help", "__build_class__",
        }
    )  # fmt: skip
    denied_names: frozenset[str] = frozenset({"__builtins__", "__loader__", "__spec__"})
    denied_attributes: frozenset[str] = frozenset(
        {
            "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code",
            "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code",
            "func_globals", "modules", "_getframe", "format_map",
        }
    )  # fmt: skip
    allowed_dunders: frozenset[str] = frozenset(
        {
            "__init__", "__name__", "__qualname__", "__doc__", "__len__", "__iter__",
            "__next__", "__enter__", "__exit__", "__str__", "__repr__", "__eq__", "__hash__",
            "__lt__", "__contains__", "__getitem__", "__setitem__", "__add__", "__call__",
        }
    )  # fmt: skip
    reflective_calls: frozenset[str] = frozenset({"getattr", "setattr", "delattr", "hasattr"})

    def attribute_denied(self, name: str) -> bool:
        if name.startswith("__") and name.endswith("__"):
            return name not in self.allowed_dunders
        return name in self.denied_attributes


DEFAULT_POLICY = Policy()


def check_code(source: str, policy: Policy = DEFAULT_POLICY) -> list[Violation]:
    """Every policy violation in ``source``, in source order; empty means "looks fine".

    A SyntaxError yields one ``syntax`` violation (fail closed): code we can't read is
    code we refuse, with the line and message Python gives.
    """
    found = _encoding_violations(source)
    try:
        tree = ast.parse(source, mode="exec")
    except (SyntaxError, ValueError) as exc:
        return [*found, _syntax_violation(exc)]
    found.extend(_identifier_violations(source, policy))
    found.extend(_Checker(policy).visit_tree(tree))
    return sorted(found, key=lambda v: (v.line, v.col, v.rule))


def syntax_error(source: str) -> Violation | None:
    """Why ``source`` is not Python (a ``syntax`` violation with Python's line and
    message), or None when it compiles. Nothing runs: ``compile`` only parses."""
    try:
        compile(source, "main.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return _syntax_violation(exc)
    return None


def _syntax_violation(exc: Exception) -> Violation:
    line = getattr(exc, "lineno", None) or 1
    col = max(0, (getattr(exc, "offset", None) or 1) - 1)
    msg = getattr(exc, "msg", None) or str(exc)
    return Violation(line, col, "syntax", f"invalid Python: {msg}")


def _encoding_violations(source: str) -> list[Violation]:
    """PEP 263: a coding cookie counts on line 1 or 2 only; anything but UTF-8 is refused."""
    found = []
    for number, line in enumerate(source.splitlines()[:2], start=1):
        match = _CODING.match(line.encode("utf-8", "surrogatepass"))
        if match and match.group(1).decode().lower().replace("_", "-") not in _UTF8:
            name = match.group(1).decode()
            found.append(
                Violation(
                    number, 0, "encoding", f"source encoding {name!r} is not allowed; use UTF-8"
                )
            )
    return found


def _identifier_violations(source: str, policy: Policy) -> Iterator[Violation]:
    denied = policy.denied_calls | policy.denied_modules | policy.denied_names
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    for token in tokens:
        if token.type != tokenize.NAME or token.string.isascii():
            continue
        normal = unicodedata.normalize("NFKC", token.string)
        if normal in denied or policy.attribute_denied(normal):
            line, col = token.start
            msg = f"identifier {token.string!r} is a disguised {normal!r}"
            yield Violation(line, col, "identifier", msg)


class _Checker(ast.NodeVisitor):
    """One pass over the tree; each visit_* adds readable violations."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.found: list[Violation] = []

    def visit_tree(self, tree: ast.AST) -> list[Violation]:
        self.visit(tree)
        return self.found

    def _add(self, node: ast.AST, rule: str, message: str) -> None:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        self.found.append(Violation(line, col, rule, message))

    def _module_denied(self, dotted: str | None) -> bool:
        if not dotted:
            return False
        parts = dotted.split(".")
        return any(
            ".".join(parts[: i + 1]) in self.policy.denied_modules for i in range(len(parts))
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._module_denied(alias.name):
                self._add(node, "import", f"import of {alias.name!r} is not allowed")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and self._module_denied(node.module):
            self._add(node, "import", f"import from {node.module!r} is not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.policy.denied_calls:
            self._add(node, "call", f"use of {node.id}() is not allowed")
        elif node.id in self.policy.denied_names:
            self._add(node, "dunder", f"access to {node.id} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.policy.attribute_denied(node.attr):
            rule = "dunder" if node.attr.startswith("__") else "attribute"
            line = node.end_lineno or node.lineno
            col = max(0, (node.end_col_offset or 0) - len(node.attr))
            message = f"access to attribute {node.attr!r} is not allowed"
            self.found.append(Violation(line, col, rule, message))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.policy.reflective_calls:
            self._check_reflective(node, func.id)
        self.generic_visit(node)

    def _check_reflective(self, node: ast.Call, name: str) -> None:
        target = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(target, ast.Constant) and isinstance(target.value, str)):
            self._add(node, "dynamic-attribute", f"{name}() needs a string literal attribute name")
            return
        attr = unicodedata.normalize("NFKC", target.value)
        if self.policy.attribute_denied(attr) or attr in self.policy.denied_calls:
            self._add(node, "dynamic-attribute", f"{name}() of {attr!r} is not allowed")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "{" in node.value:
            for attr in _format_attributes(node.value):
                if self.policy.attribute_denied(attr):
                    self._add(node, "format-string", f"format field reaches {attr!r}")
                    return

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_decorators(node.decorator_list)
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._check_decorators(node.decorator_list)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._check_decorators(node.decorator_list)
        self.generic_visit(node)

    def _check_decorators(self, decorators: list[ast.expr]) -> None:
        for decorator in decorators:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if not _plain_reference(target):
                self._add(decorator, "decorator", "decorators must be names or attributes")
            elif isinstance(target, ast.Name) and target.id in self.policy.denied_calls:
                self._add(decorator, "decorator", f"@{target.id} would call {target.id}()")


def _plain_reference(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _format_attributes(text: str, depth: int = 0) -> Iterator[str]:
    """Attribute and item names reached by str.format fields, e.g. ``{0.__class__}``."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return
    for _literal, name, spec, _conversion in parsed:
        if name:
            yield from (part for part in re.split(r"[.\[\]]", name)[1:] if part)
        if spec and depth < 2:
            yield from _format_attributes(spec, depth + 1)

"""The outline scan against the parser it replaced: for any module ``ast`` accepts, the scan
must report the same definitions, spans, indentation and class members."""

from __future__ import annotations

import ast
import sysconfig
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.index.languages import decode_source
from tasks.index.python_outline import Definition, outline


def ast_outline(body: list[ast.stmt]) -> list[Definition]:
    """The reference: what the chunker used to read off ``ast.parse``."""
    found = []
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            is_class = isinstance(node, ast.ClassDef)
            members = tuple(ast_outline(node.body)) if is_class else ()
            end = node.end_lineno or node.lineno
            found.append(Definition(node.name, is_class, first - 1, end, node.col_offset, members))
    return found


def assert_same_as_ast(text: str) -> None:
    assert outline(text) == ast_outline(ast.parse(text).body)


TRICKY = {
    "strings hiding code": """
        X = "def fake(): pass"
        Y = 'class Fake: (['
        def real():
            return "}) # not a comment"
        """,
    "column-0 text in a multi-line string": '''
        def f():
            return """
        def not_a_function():
        class NotAClass:
        """.strip()

        class K:
            doc = \'\'\'
        x = 1
            \'\'\'
            def m(self):
                pass
        ''',
    "brackets across lines": """
        CONFIG = dict(
        a=1,
        )
        def f(
        x,
        y,
        ):
            return [
        1,
            ]
        result = f(1,
        2)
        """,
    "backslash continuation": """
        total = 1 + \\
        2
        def f():
            return 1 + \\
        2
        """,
    "decorators with arguments and comments": """
        @decorate(
            option=True,
        )
        # between
        @other
        async def g():
            await h()
        @dataclass
        class D:
            x: int
        """,
    "comments everywhere": """
        # top (
        def f():  # ] unbalanced in a comment
            x = 1
            # trailing comment deeper
        # trailing comment at the top
        def g(): pass
        """,
    "one-liner class and nested classes": """
        class Empty: pass
        class Outer:
            class Inner:
                def m(self):
                    pass
                class Deepest: ...
            def after(self): return 1
            if True:
                def conditional(self): pass
        """,
    "escaped and raw quotes, prefixes": r'''
        A = "a \" quote"
        B = r"raw \" still inside"
        C = b'bytes \' too'
        D = f"{A!r} and {'nested'}"
        E = rb"""raw bytes with "" quotes """
        def f():
            return u'unicode'
        ''',
    "tabs": "class T:\n\tdef m(self):\n\t\treturn 1\n\n\tdef n(self):\n\t\tpass\n",
    "non-ASCII names": """
        def größe():
            return "ü"
        class Ünicode:
            def méthode(self): pass
        """,
    "definitions inside functions are not members": """
        def outer():
            def inner():
                pass
            class Local:
                pass
            return inner
        """,
}


@pytest.mark.parametrize("source", TRICKY.values(), ids=TRICKY.keys())
def test_tricky_layouts_read_like_ast(source: str) -> None:
    assert_same_as_ast(textwrap.dedent(source).lstrip("\n"))


def stdlib_sample() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(stdlib.glob("*.py")) + sorted((stdlib / "email").glob("*.py"))


def test_standard_library_modules_read_like_ast() -> None:
    checked = 0
    for path in stdlib_sample():
        text = decode_source(path.read_bytes())
        try:
            expected = ast_outline(ast.parse(text).body)
        except SyntaxError:  # a few test fixtures in some distributions
            continue
        assert outline(text) == expected, path.name
        checked += 1
    assert checked > 150


NAME = st.sampled_from(["a", "b", "handler", "Größe", "x1"])
LINE = st.sampled_from(
    [
        "pass",
        "x = 1",
        "return 'def s(): pass'",
        'y = """\ntext at column 0\n"""',
        "z = (\n1,\n)",
        "w = 1 + \\\n    2",
        "# comment (",
        "call(a,\n     b)  # ]",
        "if x:\n    pass",
        "s = '#'  # \"",
    ]
)


@st.composite
def programs(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["def", "async", "decorated", "class", "stmt", "blank"]))
        name = draw(NAME)
        body = "\n".join([*draw(st.lists(LINE, max_size=4)), "pass"])
        if kind == "class" and depth < 2:
            body = draw(programs(depth + 1)) + "pass"
        header = {
            "def": f"def {name}(x,\n    y):",
            "async": f"async def {name}():",
            "decorated": f"@dec(\n  1)\n# note\n@other\ndef {name}():",
            "class": f"class {name}(Base):",
        }.get(kind)
        if header is None:
            parts.append(body if kind == "stmt" else "")
        else:
            parts.append(header + "\n" + textwrap.indent(body, "    "))
    return "\n".join(parts) + "\n"


@given(source=programs())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_generated_programs_read_like_ast(source: str) -> None:
    assert_same_as_ast(source)


@pytest.mark.parametrize(
    "source",
    ["x = )\n", "def f(:\n    pass\n", "data = [1, 2\n\ndef g():\n    pass\n"],
    ids=["closer-first", "opener-left-open", "unclosed-list"],
)
def test_unbalanced_brackets_give_no_outline(source: str) -> None:
    assert outline(source) is None


def test_python_2_that_balances_still_has_an_outline() -> None:
    found = outline('print "legacy"\n\ndef old(x):\n    print x\n')
    assert found == [Definition("old", False, 2, 4, 0)]

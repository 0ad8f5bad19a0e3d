"""Load & chunk: syntax-aware Python, the generic splitter, skip heuristics, invariants."""

from __future__ import annotations

import ast
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.errors import ConfigError
from tasks.index.chunking import (
    ChunkingPolicy,
    Skip,
    _Lines,
    chunk_file,
    chunk_files,
    detect_language,
    estimate_tokens,
    skip_reason_for_path,
)
from tasks.index.languages import decode_source
from tasks.records import Chunk

DEFAULT = ChunkingPolicy()
SMALL = ChunkingPolicy(max_chunk_chars=200, max_chunk_tokens=100)


def chunks_of(path: str, source: str | bytes, policy: ChunkingPolicy = DEFAULT) -> list[Chunk]:
    data = source.encode() if isinstance(source, str) else source
    result = chunk_file(path, data, policy)
    assert isinstance(result, list), result
    assert_invariants(data, result, policy)
    return result


def summary(chunks: list[Chunk]) -> list[tuple[str, str | None, int, int]]:
    return [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]


def assert_invariants(data: bytes, chunks: list[Chunk], policy: ChunkingPolicy) -> None:
    """Every chunk within budget, text == its lines, non-blank lines in exactly one chunk."""
    lines = decode_source(data).split("\n")
    owner: dict[int, int] = {}
    pieces: dict[int, list[str]] = {}
    previous_end = 0
    for n, chunk in enumerate(chunks):
        assert len(chunk.text) <= policy.max_chunk_chars, chunk
        assert estimate_tokens(chunk.text) <= policy.max_chunk_tokens, chunk
        assert chunk.text.strip(), chunk
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.start_line >= previous_end, "chunks out of order or overlapping"
        full = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        if chunk.text == full:
            for number in range(chunk.start_line, chunk.end_line + 1):
                assert number not in owner and number not in pieces, f"line {number} twice"
                owner[number] = n
            previous_end = chunk.end_line + 1
        else:
            assert chunk.start_line == chunk.end_line and chunk.text in full, chunk
            assert chunk.start_line not in owner
            pieces.setdefault(chunk.start_line, []).append(chunk.text)
            previous_end = chunk.start_line
    for number, line in enumerate(lines, start=1):
        if number in pieces:
            assert_pieces_partition(line, pieces[number])
        elif line.strip():
            assert number in owner, f"line {number} lost: {line!r}"


def assert_pieces_partition(line: str, parts: list[str]) -> None:
    position = 0
    for part in parts:
        found = line.find(part, position)
        assert found >= position and not line[position:found].strip(), (line, parts)
        position = found + len(part)
    assert not line[position:].strip()


# --- Python: syntax-aware ---------------------------------------------------------------

PY_MODULE = '''\
"""Module docstring."""
import os

CONSTANT = 1


# Helpers follow.
@cache
@other(
    1,
)
def helper(x):
    return x
    # still helper


async def fetch():
    pass


class Small:
    def a(self):
        return 1


if __name__ == "__main__":
    helper(CONSTANT)
'''


def test_python_functions_classes_decorators_and_module_code() -> None:
    chunks = chunks_of("pkg/mod.py", PY_MODULE)
    assert summary(chunks) == [
        ("module", None, 1, 4),
        ("function", "helper", 7, 14),
        ("function", "fetch", 17, 18),
        ("class", "Small", 21, 23),
        ("module", None, 26, 27),
    ]
    assert chunks[1].text.startswith("# Helpers follow.\n@cache\n@other(")
    assert chunks[1].text.endswith("    # still helper")
    assert {c.language for c in chunks} == {"python"}
    assert {c.path for c in chunks} == {"pkg/mod.py"}


def test_python_big_class_becomes_header_plus_one_chunk_per_method() -> None:
    methods = "".join(
        f"\n    @property\n    def m{i}(self):\n        return [{', '.join(['1'] * 20)}]\n"
        for i in range(12)
    )
    source = f'class Big(Base):\n    """Docstring."""\n\n    x: int = 0\n{methods}\n    y = 2\n'
    chunks = chunks_of("big.py", source, SMALL)
    assert chunks[0].kind == "class" and chunks[0].symbol == "Big"
    assert chunks[0].text == 'class Big(Base):\n    """Docstring."""\n\n    x: int = 0'
    method_chunks = [c for c in chunks if c.kind == "method"]
    assert [c.symbol for c in method_chunks] == [f"Big.m{i}" for i in range(12)]
    assert all(c.text.lstrip().startswith("@property") for c in method_chunks)
    assert summary(chunks)[-1] == (
        "class",
        "Big",
        len(source.splitlines()),
        len(source.splitlines()),
    )


def test_python_nested_class_in_big_class_is_qualified() -> None:
    body = "".join(f"    def m{i}(self):\n        return {i}\n\n" for i in range(6))
    source = f"class Outer:\n{body}    class Inner:\n        def deep(self):\n            pass\n"
    chunks = chunks_of("n.py", source, ChunkingPolicy(max_chunk_chars=60, max_chunk_tokens=40))
    assert ("class", "Outer.Inner", 20, 22) in summary(chunks)


def test_python_huge_function_is_split_into_windows_that_keep_the_symbol() -> None:
    body = "".join(f"    value_{i} = compute({i}, 'x' * {i})\n" for i in range(400))
    source = f"import x\n\n\ndef huge(a, b):\n{body}    return a\n\n\ndef after():\n    pass\n"
    chunks = chunks_of("h.py", source)
    huge = [c for c in chunks if c.symbol == "huge"]
    assert len(huge) > 5
    assert all(c.kind == "function" for c in huge)
    assert huge[0].start_line == 4 and huge[-1].end_line == 405
    assert [c.start_line for c in huge[1:]] == [c.end_line + 1 for c in huge[:-1]]
    assert summary(chunks)[-1] == ("function", "after", 408, 409)


def test_python_2_is_still_chunked_by_definition() -> None:
    source = 'print "python 2"\n\ndef old(x):\n    print x\n\n\nclass K:\n    pass\n'
    chunks = chunks_of("legacy.py", source, ChunkingPolicy(max_chunk_chars=30, max_chunk_tokens=10))
    assert all(c.language == "python" for c in chunks)
    assert ("function", "old", 3, 4) in summary(chunks)
    assert ("class", "K", 7, 8) in summary(chunks)


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "(" * 300 + ")" * 300 + "\n",
        "def f():\n    pass\n" * 1000 + "\0\n",
        "{% if template %}\ndef {{ name }}():\n    pass\n{% endif %}\n",
    ],
    ids=["too-deep", "nul-after-sniff-window", "jinja-template"],
)
def test_python_that_does_not_parse_never_raises(source: str) -> None:
    assert chunks_of("odd.py", source)


def test_python_warnings_from_the_repository_code_are_not_shown() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunks_of("esc.py", 'PATTERN = "\\d+"\n\ndef f():\n    return "\\w"\n')
    assert caught == []


def test_python_script_without_extension_detected_by_shebang() -> None:
    chunks = chunks_of("bin/tool", "#!/usr/bin/env python3\nimport sys\n\ndef main():\n    pass\n")
    assert summary(chunks) == [("module", None, 1, 2), ("function", "main", 4, 5)]
    assert chunks[0].language == "python"


# --- Generic splitter -------------------------------------------------------------------

JS_SOURCE = """\
import { a } from "./a";

/** Adds. */
export function add(x, y) {
  return x + y;
}

export default class Widget extends Base {
  render() {
    return "<div>" + this.name + "</div>";
  }
}

const handler = async (event) => {
  await add(1, 2);
};
"""


def test_javascript_definitions_are_units_with_their_doc_comments() -> None:
    chunks = chunks_of(
        "web/app.js", JS_SOURCE, ChunkingPolicy(max_chunk_chars=110, max_chunk_tokens=60)
    )
    assert summary(chunks) == [
        ("module", None, 1, 1),
        ("function", "add", 3, 6),  # from its doc comment, through the export
        ("class", "Widget", 8, 12),
        ("function", "handler", 14, 16),  # an arrow function bound to a name
    ]
    assert chunks[2].text.endswith("  }\n}")
    assert {c.language for c in chunks} == {"javascript"}


def test_small_neighbours_merge_when_asked() -> None:
    source = "package main\n\nfunc main() {\n}\n"
    assert summary(chunks_of("main.go", source)) == [
        ("module", None, 1, 1),
        ("function", "main", 3, 4),
    ]
    merged = chunks_of("main.go", source, ChunkingPolicy(min_chunk_chars=100))
    assert summary(merged) == [("window", "main", 1, 4)]
    assert merged[0].text == source.rstrip("\n")


def test_go_method_symbol_and_rust_fn_symbol() -> None:
    go = "func (s *Server) Serve() error {\n" + "\tx := 1\n" * 300 + "}\n"
    assert {c.symbol for c in chunks_of("s.go", go)} == {"Server.Serve"}  # every piece
    rust = "impl Server {\n    pub async fn serve(&self) {}\n}\n"
    assert chunks_of("s.rs", rust)[0].symbol == "Server"


def test_single_enormous_line_is_hard_split_by_characters() -> None:
    line = " ".join(f"word{i}" for i in range(2000))
    chunks = chunks_of("notes.txt", f"title\n\n{line}\n\nend\n")
    middle = [c for c in chunks if c.start_line == 3]
    assert len(middle) > 5 and all(c.end_line == 3 for c in middle)
    assert "".join(c.text for c in middle) == line


def test_markdown_prefers_paragraph_boundaries() -> None:
    paragraphs = [f"## Section {i}\n\n" + "Lorem ipsum dolor sit amet. " * 12 for i in range(8)]
    chunks = chunks_of("README.md", "\n\n".join(paragraphs) + "\n")
    assert all(c.text.startswith("## Section") for c in chunks)


# --- Skips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data", "reason"),
    [
        ("img/logo.bin2", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary"),
        ("a/b.dat2", bytes(range(1, 32)) * 50, "binary"),
        ("logo.png", b"not even read", "binary"),
        ("static/app.js", b"var a=1;" * 600, "minified"),
        ("static/app.min.js", b"var a = 1;\n", "minified"),
        ("styles/site.css", b"a{color:red}" * 400, "minified"),
        (
            "api/x.go",
            b"// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n",
            "generated",
        ),
        ("gen.py", b"# @generated by tool\nX = 1\n", "generated"),
        ("proto/msg_pb2.py", b"X = 1\n", "generated"),
        ("package-lock.json", b"{}\n", "generated"),
        ("sub/Cargo.lock", b"x\n", "generated"),
        ("node_modules/lib/index.js", b"x\n", "vendored"),
        ("go/vendor/github.com/x/y.go", b"x\n", "vendored"),
        ("third_party/z.c", b"x\n", "vendored"),
        ("big.py", b"x = 1\n" * 200_000, "oversized"),
        ("empty.py", b"", "empty"),
        ("blank.md", b"  \n\r\n\t\n", "empty"),
    ],
)
def test_skips(path: str, data: bytes, reason: str) -> None:
    assert chunk_file(path, data) == Skip(path, reason)  # type: ignore[arg-type]


def test_skip_switches_and_ignore_globs() -> None:
    data = b"// Code generated by x. DO NOT EDIT.\nfunction f() {}\n"
    assert chunk_file("node_modules/g.js", data) == Skip("node_modules/g.js", "vendored")
    assert chunk_file("g.js", data) == Skip("g.js", "generated")
    everything = ChunkingPolicy(skip_vendored=False, skip_generated=False)
    assert [c.symbol for c in chunks_of("node_modules/g.js", data, everything)] == ["f"]
    policy = ChunkingPolicy(ignore_globs=("docs", "*.snap", "build/out/*"))
    assert skip_reason_for_path("docs/guide/a.md", policy) == "ignored"
    assert skip_reason_for_path("tests/__snapshots__/x.snap", policy) == "ignored"
    assert skip_reason_for_path("build/out/x.py", policy) == "ignored"
    assert skip_reason_for_path("src/docs.py", policy) is None
    assert skip_reason_for_path("src/app.py", DEFAULT) is None
    assert skip_reason_for_path("Lib/venv/__init__.py", DEFAULT) is None  # the stdlib module
    assert skip_reason_for_path(".venv/lib/python3.11/site-packages/x.py", DEFAULT) == "vendored"


def test_not_skipped_small_one_line_json_and_marker_inside_code() -> None:
    assert chunks_of("config.json", '{"name": "x", "values": [' + "1, " * 100 + "1]}")
    assert chunks_of("m.py", 'NOTE = "DO NOT EDIT the fixtures"\n')


def test_oversized_limit_is_configurable() -> None:
    assert chunk_file("a.py", b"x = 1\n" * 10, ChunkingPolicy(max_file_bytes=20)) == Skip(
        "a.py", "oversized"
    )


# --- Decoding ---------------------------------------------------------------------------


def test_undecodable_bytes_are_replaced_not_lost() -> None:
    chunks = chunks_of("bad.py", b"NAME = 'caf\xe9'\n\ndef f():\n    return NAME\n")
    assert chunks[0].text == "NAME = 'caf\ufffd'"
    assert chunks[1].symbol == "f"


def test_coding_cookie_is_honoured_for_non_utf8_python() -> None:
    chunks = chunks_of("latin.py", "# -*- coding: latin-1 -*-\nNAME = 'café'\n".encode("latin-1"))
    assert "café" in chunks[0].text


def test_utf16_and_utf8_bom_files_decode() -> None:
    assert chunks_of("w.txt", "\ufeffhello\r\nworld\r\n".encode("utf-16"))[0].text == "hello\nworld"
    chunks = chunks_of("bom.py", b"\xef\xbb\xbfdef f():\n    pass\n")
    assert summary(chunks) == [("function", "f", 1, 2)]


def test_crlf_and_lone_cr_give_the_same_chunks_as_lf() -> None:
    lf = chunks_of("m.py", PY_MODULE)
    assert chunks_of("m.py", PY_MODULE.replace("\n", "\r\n")) == lf
    assert chunks_of("m.py", PY_MODULE.replace("\n", "\r")) == lf
    assert all("\r" not in c.text for c in lf)


def test_non_ascii_text_is_bounded_by_the_token_estimate() -> None:
    source = "\n".join("这是一个很长的中文句子用来测试分块。" * 3 for _ in range(200))
    chunks = chunks_of("zh.md", source)
    assert all(estimate_tokens(c.text) <= 512 for c in chunks)
    assert max(len(c.text) for c in chunks) < 1500
    assert chunks_of("π.py", "def π():\n    return 'ünïcödé'\n")[0].symbol == "π"


# --- API details ------------------------------------------------------------------------


def test_chunk_files_batches_chunks_and_skips() -> None:
    items = [("a.py", b"def a():\n    pass\n"), ("b.png", b"\0"), ("c.js", b"let c = 1;\n")]
    chunks, skips = chunk_files(items, ChunkingPolicy())
    assert [c.path for c in chunks] == ["a.py", "c.js"]
    assert skips == [Skip("b.png", "binary")]


def test_policy_rejects_budgets_that_cannot_hold_a_character() -> None:
    with pytest.raises(ConfigError):
        ChunkingPolicy(max_chunk_tokens=1)
    with pytest.raises(ConfigError):
        ChunkingPolicy(max_chunk_chars=0)


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a/b.py", "python"), ("x.PYI", "python"), ("web/x.tsx", "typescript"),
        ("m.mjs", "javascript"),
        ("Dockerfile", "dockerfile"), ("ops/Dockerfile.prod", "dockerfile"), ("Makefile", "make"),
        ("lib.rs", "rust"), ("a.hpp", "cpp"), ("README", "text"), (".bashrc", "text"),
        ("notes.weird", "text"), ("CMakeLists.txt", "cmake"),
    ],
)  # fmt: skip
def test_detect_language(path: str, language: str) -> None:
    assert detect_language(path) == language


def test_estimate_tokens_is_pessimistic_and_counts_bytes() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 2
    assert estimate_tokens("中文") == 2
    assert estimate_tokens("x" * 1500) == 500


# --- Properties -------------------------------------------------------------------------

LINE_ALPHABET = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029\x85"
) | st.sampled_from(" \t{}()[];#/*@")
LINE = st.one_of(
    st.just(""),
    st.text(LINE_ALPHABET, max_size=40).map(lambda s: s.replace("\n", "")),
    st.builds(
        lambda n, s: " " * n + s, st.integers(0, 12), st.text("abc {}();", min_size=1, max_size=20)
    ),
    st.text("ab ,", min_size=100, max_size=600),
)
POLICIES = st.builds(
    lambda chars, tokens: ChunkingPolicy(
        max_chunk_chars=chars, max_chunk_tokens=tokens, skip_generated=False, skip_minified=False
    ),
    st.integers(8, 300),
    st.integers(4, 120),
)


@st.composite
def generic_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(LINE, max_size=60))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    data = newline.join(lines).encode()
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe"[: draw(st.integers(1, 2))] + data[at:]
    return data


@given(
    data=generic_files(), policy=POLICIES, path=st.sampled_from(["f.txt", "f.js", "f.go", "f.py"])
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_generic_path_loses_nothing_and_fits(
    data: bytes, policy: ChunkingPolicy, path: str
) -> None:
    result = chunk_file(path, data, policy)
    if isinstance(result, Skip):
        assert result.reason in {"empty", "binary"}
        return
    assert_invariants(data, result, policy)


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"if", "in", "is", "or", "as", "def", "for", "and", "not", "del", "try"}
)
STATEMENT = st.one_of(
    st.builds("x = {!r}".format, st.text(LINE_ALPHABET, max_size=80)),
    st.builds("return {}".format, st.integers()),
    st.just("pass"),
    st.just("# a comment"),
    st.just(""),
    st.builds('s = """\n{}\n"""'.format, st.text("ab \n", max_size=60)),
)


def block(statements: list[str], indent: str) -> str:
    return "\n".join(indent + s if s else "" for s in [*statements, "pass"])


@st.composite
def python_files(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["def", "class", "stmt", "decorated", "comment"]))
        name = draw(NAMES)
        body = draw(st.lists(STATEMENT, max_size=12))
        if kind == "def":
            parts.append(f"def {name}():\n{block(body, '    ')}")
        elif kind == "decorated":
            parts.append(f"# about {name}\n@dec\nasync def {name}():\n{block(body, '    ')}")
        elif kind == "class":
            methods = [
                f"    def m{i}(self):\n{block(draw(st.lists(STATEMENT, max_size=8)), '        ')}"
                for i in range(draw(st.integers(0, 4)))
            ]
            parts.append(f"class {name}:\n" + ("\n\n".join(methods) or "    pass"))
        elif kind == "stmt":
            parts.append(block(body, ""))
        else:
            parts.append("# " + draw(st.text(LINE_ALPHABET, max_size=30)))
    return draw(st.sampled_from(["\n", "\n\n", "\n\n\n"])).join(parts) + "\n"


@given(source=python_files(), policy=POLICIES, crlf=st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_python_path_loses_nothing_and_fits(
    source: str, policy: ChunkingPolicy, crlf: bool
) -> None:
    ast.parse(source)
    data = (source.replace("\n", "\r\n") if crlf else source).encode()
    result = chunk_file("m.py", data, policy)
    if isinstance(result, Skip):
        assert result.reason == "empty"
        return
    assert_invariants(data, result, policy)
    defined = {
        node.name
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    symbols = {c.symbol.partition(".")[0] for c in result if c.symbol}
    assert defined <= symbols


def test_property_helper_catches_a_lost_line() -> None:
    data = b"one\n\ntwo\n"
    chunks = chunks_of("t.txt", data)
    assert summary(chunks) == [("window", None, 1, 3)]
    with pytest.raises(AssertionError, match="lost"):
        assert_invariants(data, [], ChunkingPolicy())
    overlapping = [chunks[0], Chunk("t.txt", "text", 3, 3, "two")]
    with pytest.raises(AssertionError):
        assert_invariants(data, overlapping, ChunkingPolicy())


def _break_key(lines: list[str], i: int) -> int | None:
    """The boundary rank before line ``i``, line by line, as the chunker defines it."""
    stripped = lines[i].lstrip()
    if not stripped or stripped[0] in ")]}":
        return None
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and lines[j].lstrip().startswith(("#", "//", "/*", "*", "--", ";", "@", "<!--", "%")):
        rank = 2
    else:
        rank = 0 if j < i - 1 else 1
    return min(len(lines[i]) - len(stripped), 32) * 3 + rank


_LINE_SHAPES = [
    "", "   ", "\t", "x = 1", "    y = 2", "        z", "# note", "  @deco", ")", "  ]", "}",
    "-- sql", "<!-- c -->", "% tex", "def f():", " " * 40 + "deep", "\u3000w",
]  # fmt: skip


@given(st.lists(st.sampled_from(_LINE_SHAPES), min_size=2, max_size=40))
def test_one_pass_breaks_rank_every_line_as_defined(lines: list[str]) -> None:
    spans = _Lines("\n".join(lines), ChunkingPolicy())
    a = next((i for i, line in enumerate(lines) if line.strip()), None)
    if a is None:
        return
    b = len(lines)
    expected = [(i, k) for i in range(a + 1, b) if (k := _break_key(lines, i)) is not None]
    assert spans.breaks(a, b) == expected

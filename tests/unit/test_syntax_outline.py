"""The tree-sitter outline: definitions, names, doc comments and members in every grammar."""

from __future__ import annotations

import pytest

from tasks.index.chunking import ChunkingPolicy, chunk_file
from tasks.index.python_outline import Definition
from tasks.index.syntax_outline import LANGUAGES, outline


def shape(definitions: list[Definition] | None) -> list[tuple[object, ...]]:
    """(name, is_class, first line, last line, members) with 1-based inclusive lines."""
    assert definitions is not None
    return [
        (d.name, d.is_class, d.start + 1, d.end, shape(list(d.members)) if d.members else [])
        for d in definitions
    ]


CASES = {
    "go": (
        "package web\n\n// Context carries a request.\ntype Context struct {\n\tw int\n}\n\n"
        "// JSON writes v.\nfunc (c *Context) JSON(v any) {\n\tc.w = 1\n}\n",
        [("Context", True, 3, 6, []), ("Context.JSON", False, 8, 11, [])],
    ),
    "rust": (
        "/// A walker.\n#[derive(Debug)]\npub struct Walk { depth: usize }\n\n"
        "impl Walk {\n    /// Next entry.\n    pub fn next(&mut self) -> usize {\n"
        "        self.depth\n    }\n}\n",
        [("Walk", True, 1, 3, []), ("Walk", True, 5, 10, [("next", False, 6, 9, [])])],
    ),
    "java": (
        "package a;\n\n/** Loads classes. */\npublic class Loader {\n"
        "    /** Finds one. */\n    public Class<?> find(String n) {\n        return null;\n"
        "    }\n}\n",
        [("Loader", True, 3, 9, [("find", False, 5, 8, [])])],
    ),
    "csharp": (
        "namespace Py.Runtime\n{\n    /// <summary>Manages classes.</summary>\n"
        "    internal class ClassManager\n    {\n        public static void Reset() { }\n"
        "    }\n}\n",
        [("ClassManager", True, 3, 7, [("Reset", False, 6, 6, [])])],
    ),
    "ruby": (
        "module Rack\n  # Builds apps.\n  class Builder\n    def use(m)\n      @u << m\n"
        "    end\n  end\nend\n",
        [("Rack", True, 1, 8, [("Builder", True, 2, 7, [("use", False, 4, 6, [])])])],
    ),
    "php": (
        "<?php\nnamespace Symfony\\Console;\n\n/** The app. */\nclass Application\n{\n"
        "    public function run(): int\n    {\n        return 0;\n    }\n}\n",
        [("Application", True, 4, 11, [("run", False, 7, 10, [])])],
    ),
    "c": (
        '#include "lua.h"\n\n/* Pushes nil. */\nLUA_API void lua_pushnil (lua_State *L) {\n'
        "  setnilvalue(L->top);\n}\n\n#if defined(X)\nstatic int f (void) { return 0; }\n#endif\n"
        "typedef struct Node { int v; } Node;\n",
        [
            ("lua_pushnil", False, 3, 6, []),
            ("f", False, 9, 9, []),
            ("Node", True, 11, 11, []),
        ],
    ),
    "cpp": (
        "namespace py {\n/// A handle.\ntemplate <typename T>\nclass handle : public object {\n"
        "public:\n    void inc_ref() { ++n; }\n};\n}\n",
        [("handle", True, 2, 7, [("inc_ref", False, 6, 6, [])])],
    ),
    "javascript": (
        "/** Sends. */\nres.send = function send(body) {\n  return body;\n};\n\n"
        "class Router {\n  route(p) { return p; }\n}\n",
        [("res.send", False, 1, 4, []), ("Router", True, 6, 8, [("route", False, 7, 7, [])])],
    ),
    "typescript": (
        "// A model.\nexport class Card extends Column {\n  render(): void {}\n}\n\n"
        "export interface Props {\n  a: number\n}\n",
        [("Card", True, 1, 4, [("render", False, 3, 3, [])]), ("Props", True, 6, 8, [])],
    ),
}


@pytest.mark.parametrize("language", sorted(CASES))
def test_definitions_names_and_doc_comments(language: str) -> None:
    source, expected = CASES[language]
    assert shape(outline(source, language)) == expected


def test_every_grammar_loads_offline() -> None:
    for language in LANGUAGES:
        assert outline("\n", language) == [], language


def test_languages_without_a_grammar_have_no_outline() -> None:
    assert outline("x = 1\n", "cobol") is None


def test_broken_code_still_has_an_outline_for_what_parses() -> None:
    found = outline("func ok() {}\n\nfunc broken( {\n", "go")
    assert found is not None and found[0].name == "ok"


def test_a_cpp_header_is_chunked_as_cpp() -> None:
    source = b"#pragma once\nnamespace py {\nclass object {\n  int n;\n};\n}\n"
    chunks = chunk_file("include/py.h", source)
    assert not isinstance(chunks, type(None)) and isinstance(chunks, list)
    assert {c.language for c in chunks} == {"cpp"}
    assert [c.symbol for c in chunks if c.kind == "class"] == ["object"]


def test_a_big_class_is_cut_into_its_members() -> None:
    methods = "".join(
        f"    public void m{i}() {{\n        int x = {i};\n        x++;\n    }}\n"
        for i in range(40)
    )
    source = f"public class Big {{\n{methods}}}\n".encode()
    chunks = chunk_file("Big.java", source, ChunkingPolicy(max_chunk_chars=400))
    assert isinstance(chunks, list)
    methods_seen = {c.symbol for c in chunks if c.kind == "method"}
    assert {f"Big.m{i}" for i in range(40)} <= methods_seen

"""Query analysis and the ranking steps added for code questions: exact definitions,
prose demotions, grouping neighbours, stemmed query terms (pure, no daemons)."""

from __future__ import annotations

import pytest

from tasks.records import SearchHit
from tasks.search.query import analyze, last_name
from tasks.search.ranking import fuse, group_neighbours, joined
from tasks.tokens.code_tokens import query_tokens, stem


def hit(
    hit_id: str, path: str, lines: tuple[int, int] = (1, 10), symbol: str | None = None
) -> SearchHit:
    return SearchHit(hit_id, path, *lines, 0.0, f"text of {hit_id}", symbol, "go")


@pytest.mark.parametrize(
    ("query", "kind", "identifiers"),
    [
        ("Context.Next", "symbol", ("context.next",)),
        ("where is parse_config defined", "symbol", ("parse_config",)),
        ("RouterGroup.combineHandlers", "symbol", ("routergroup.combinehandlers",)),
        ("class_::def_readwrite", "symbol", ("class_::def_readwrite",)),
        ("how are redirects followed", "prose", ()),
        (
            "How does the Engine pick a route when two patterns match the same path",
            "prose",
            ("engine",),
        ),
    ],
)
def test_queries_are_read_as_symbol_or_prose(
    query: str, kind: str, identifiers: tuple[str, ...]
) -> None:
    intent = analyze(query)
    assert (intent.kind, intent.identifiers) == (kind, identifiers)


def test_what_a_query_asks_for() -> None:
    assert analyze("how do the tests of the parser mock the lexer").wants_tests
    assert analyze("is there an example of a custom middleware").wants_examples
    assert not analyze("how does the parser handle errors").wants_tests
    assert last_name("a::b::c") == "c" and last_name("Context.Next") == "Next"


def test_the_exact_definition_wins_a_symbol_query() -> None:
    caller = hit("c", "gin.go", symbol="Engine.handleHTTPRequest")
    definition = hit("d", "context.go", symbol="Context.Next")
    ranked = fuse([caller, definition], [caller, definition], "Context.Next", limit=2)
    assert [h.id for h in ranked] == ["d", "c"]


def test_prose_queries_push_tests_examples_and_docs_down() -> None:
    test = hit("t", "tests/test_redirects.go", symbol="TestRedirect")
    example = hit("e", "examples/redirect/main.go", symbol="main")
    docs = SearchHit("m", "docs/redirects.md", 1, 5, 0.0, "", None, "markdown")
    code = hit("c", "client.go", symbol="Client.follow")
    both = [test, example, docs, code]
    assert fuse(both, both, "how are redirects followed", limit=4)[0].id == "c"
    asked = fuse(both, both, "which tests cover redirects", limit=4)
    assert asked[0].id == "t"


def test_neighbouring_pieces_of_a_file_become_one_hit() -> None:
    ranked = [
        hit("a", "walk.rs", (100, 140), "Walk.next"),
        hit("x", "lib.rs", (1, 20)),
        hit("b", "walk.rs", (141, 180), "Walk.next"),
        hit("c", "walk.rs", (300, 320), "Walk.skip"),  # same file, far away: its own hit
    ]
    groups = group_neighbours(ranked, limit=10)
    assert [[h.id for h in g] for g in groups] == [["a", "b"], ["x"], ["c"]]
    merged = joined(groups[0])
    assert (merged.start_line, merged.end_line) == (100, 180)
    assert merged.text == "text of a\ntext of b" and merged.symbol == "Walk.next"


def test_groups_stay_readable_and_the_limit_counts_groups() -> None:
    long_run = [hit(str(i), "big.c", (1 + 40 * i, 40 * (i + 1))) for i in range(6)]
    groups = group_neighbours(long_run, limit=10)
    assert all(g[-1].end_line - g[0].start_line < 120 for g in groups) and len(groups) > 1
    assert len(group_neighbours([hit(str(i), f"f{i}.c") for i in range(20)], limit=5)) == 5


def test_query_terms_add_the_stems_of_inflected_words() -> None:
    assert stem("redirects") == "redirect" and stem("interned") == "intern"
    assert stem("dependencies") == "dependency" and stem("is") == "is"
    tokens = query_tokens("how are short strings interned")
    assert tokens[:4] == ["how", "short", "strings", "interned"]
    assert {"string", "intern", "interne"} <= set(tokens)

"""fuse(): reciprocal-rank fusion plus ranking priors (pure, no daemons)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.records import SearchHit
from tasks.search.ranking import (
    COHERENCE_CAP,
    COHERENCE_WEIGHT,
    fuse,
    is_test_path,
    is_vendored_path,
    rrf_scores,
)


def hit(hit_id: str, path: str, symbol: str | None = None, language: str = "python") -> SearchHit:
    return SearchHit(hit_id, path, 1, 10, 0.0, f"text of {hit_id}", symbol, language)


def test_rrf_first_in_both_lists_scores_one() -> None:
    a, b = hit("a", "x.py"), hit("b", "y.py")
    scores = rrf_scores([a, b], [a, b])
    assert scores["a"] == 1.0
    assert scores["b"] < scores["a"]


def test_weighted_rrf_counts_each_list_by_its_weight() -> None:
    a, b = hit("a", "x.py"), hit("b", "y.py")
    assert rrf_scores([a, b], [a, b], weights=(1.0, 0.25))["a"] == pytest.approx(1.0)
    lexical_first = rrf_scores([a, b], [b, a], weights=(1.0, 0.25))
    assert lexical_first["a"] > lexical_first["b"]
    # Equal weights: a tie; the vector list's favourite wins only when it weighs more.
    assert rrf_scores([a, b], [b, a])["a"] == rrf_scores([a, b], [b, a])["b"]
    semantic_first = rrf_scores([a, b], [b, a], weights=(1.0, 2.0))
    assert semantic_first["b"] > semantic_first["a"]
    with pytest.raises(ValueError, match="2 ranked lists but 1 weights"):
        rrf_scores([a], [b], weights=(1.0,))


def test_fuse_passes_the_semantic_weight_on() -> None:
    lexical = [hit("a", "x.py"), hit("b", "y.py")]
    semantic = [hit("b", "y.py"), hit("c", "z.py"), hit("a", "x.py")]
    even = fuse(lexical, semantic, "nothing in common", limit=3)
    light = fuse(lexical, semantic, "nothing in common", limit=3, semantic_weight=0.25)
    assert [h.id for h in even][:1] == ["b"]  # first in one list, second in the other
    assert [h.id for h in light] == ["a", "b", "c"]


def test_definition_beats_a_mention_ranked_higher_by_retrievers() -> None:
    mention = hit("m", "app/views.py", symbol="render_page")
    definition = hit("d", "app/views.py", symbol="load_config")
    fused = fuse([mention, definition], [mention, definition], "load config", limit=2)
    assert [h.id for h in fused] == ["d", "m"]


def test_tests_rank_below_the_source_they_test() -> None:
    test = hit("t", "tests/test_config.py", symbol="helper")
    source = hit("s", "app/settings.py", symbol="helper")
    fused = fuse([test, source], [test, source], "helper", limit=2)
    assert [h.id for h in fused] == ["s", "t"]


def test_tests_are_not_demoted_when_the_query_asks_for_tests() -> None:
    test = hit("t", "tests/test_config.py", symbol="helper")
    source = hit("s", "app/settings.py", symbol="helper")
    fused = fuse([test, source], [test, source], "helper test", limit=2)
    assert fused[0].id == "t"


def test_file_name_match_lifts_a_chunk() -> None:
    other = hit("o", "app/util.py")
    named = hit("n", "app/config_loader.py")
    fused = fuse([other, named], [other, named], "config loader", limit=2)
    assert fused[0].id == "n"


def test_init_vendored_and_docs_are_demoted() -> None:
    plain = hit("p", "pkg/core.py")
    for demoted in (
        hit("i", "pkg/__init__.py"),
        hit("v", "vendor/lib/core.py"),
        hit("g", "api/service_pb2.py"),
        hit("r", "docs/guide.md", language="markdown"),
    ):
        fused = fuse([demoted, plain], [demoted, plain], "core", limit=2)
        assert fused[0].id == "p", demoted.path


def test_coherence_bonus_is_capped() -> None:
    many = [hit(f"f{i}", "app/big.py") for i in range(10)]
    lone = hit("lone", "app/small.py")
    fused = fuse([*many, lone], [], "zzz", limit=11)
    by_id = {h.id: h.score for h in fused}
    bonus = by_id["f9"] / rrf_scores([*many, lone], [])["f9"]
    assert bonus == 1.0 + COHERENCE_WEIGHT * COHERENCE_CAP


def test_path_predicates() -> None:
    assert is_test_path("pkg/foo_test.go")
    assert is_test_path("src/components/button.spec.ts")
    assert is_test_path("conftest.py")
    assert not is_test_path("src/latest/contest.py")
    assert is_vendored_path("web/node_modules/react/index.js")
    assert not is_vendored_path("src/builder.py")


def test_limit_and_empty_inputs() -> None:
    assert fuse([], [], "anything", limit=5) == []
    hits = [hit(str(i), f"m{i}.py") for i in range(8)]
    assert len(fuse(hits, hits, "q", limit=3)) == 3
    assert fuse(hits, hits, "q", limit=0) == []


ids = st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10)


@given(ids, ids, st.sampled_from(["", "alpha", "load config", "test helper"]))
def test_fusion_is_deterministic_descending_and_duplicate_free(
    lexical_ids: list[str], semantic_ids: list[str], query: str
) -> None:
    paths = {c: ("tests/test_x.py" if c in "ab" else f"src/{c}.py") for c in "abcdefghij"}
    lexical = [hit(c, paths[c], symbol=f"alpha_{c}") for c in lexical_ids]
    semantic = [hit(c, paths[c], symbol=f"alpha_{c}") for c in semantic_ids]
    first = fuse(lexical, semantic, query, limit=20)
    assert first == fuse(list(lexical), list(semantic), query, limit=20)
    scores = [h.score for h in first]
    assert scores == sorted(scores, reverse=True)
    assert len({h.id for h in first}) == len(first) == len(set(lexical_ids) | set(semantic_ids))


def test_ties_keep_first_appearance_order() -> None:
    a, b = hit("a", "src/a.py"), hit("b", "src/b.py")
    # a is first lexically, b first semantically: same fused score, same priors.
    fused = fuse([a, b], [b, a], "zzz", limit=2)
    assert fused[0].score == fused[1].score
    assert [h.id for h in fused] == ["a", "b"]

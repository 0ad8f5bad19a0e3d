"""diff_manifests: change detection between two manifests (pure, no git)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.index.changes import Changes, apply_changes, blob_sha, diff_manifests, pair_renames

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)


def test_first_run_is_a_full_scan_of_everything() -> None:
    changes = diff_manifests(None, {"z.py": A, "a.py": B})
    assert changes == Changes(["a.py", "z.py"], [], [], [], full_scan=True, unchanged=0)
    assert changes.to_load == ["a.py", "z.py"]
    assert changes.to_remove == []


def test_identical_manifests_change_nothing() -> None:
    manifest = {"a.py": A, "b/c.py": B}
    changes = diff_manifests(manifest, dict(manifest))
    assert not changes.has_changes
    assert changes.unchanged == 2
    assert (changes.to_load, changes.to_remove, changes.full_scan) == ([], [], False)


def test_added_modified_deleted() -> None:
    changes = diff_manifests(
        {"keep": A, "edit": B, "gone": C}, {"keep": A, "edit": D, "new": "e" * 40}
    )
    assert changes.added == ["new"]
    assert changes.modified == ["edit"]
    assert changes.deleted == ["gone"]
    assert changes.renamed == []
    assert changes.unchanged == 1
    assert changes.to_load == ["edit", "new"]
    assert changes.to_remove == ["edit", "gone"]


def test_rename_is_a_deleted_path_whose_blob_reappears() -> None:
    changes = diff_manifests({"old/name.py": A, "x": B}, {"new/name.py": A, "x": B})
    assert changes.renamed == [("old/name.py", "new/name.py")]
    assert changes.added == changes.deleted == []
    assert changes.to_load == ["new/name.py"]
    assert changes.to_remove == ["old/name.py"]


def test_content_change_plus_move_is_delete_and_add() -> None:
    changes = diff_manifests({"old.py": A}, {"new.py": B})
    assert (changes.added, changes.deleted, changes.renamed) == (["new.py"], ["old.py"], [])


def test_copy_keeps_the_original_and_adds_the_copy() -> None:
    changes = diff_manifests({"a.py": A}, {"a.py": A, "b.py": A})
    assert (changes.added, changes.renamed, changes.unchanged) == (["b.py"], [], 1)


def test_many_identical_blobs_pair_same_names_first() -> None:
    empty = blob_sha(b"")
    old = {"pkg/__init__.py": empty, "pkg/sub/__init__.py": empty, "pkg/py.typed": empty}
    new = {
        "src/pkg/py.typed": empty,
        "src/pkg/__init__.py": empty,
        "src/pkg/sub/__init__.py": empty,
    }
    changes = diff_manifests(old, new)
    assert changes.renamed == [
        ("pkg/__init__.py", "src/pkg/__init__.py"),
        ("pkg/py.typed", "src/pkg/py.typed"),
        ("pkg/sub/__init__.py", "src/pkg/sub/__init__.py"),
    ]


def test_surplus_identical_blobs_stay_added_or_deleted() -> None:
    pairs = pair_renames({"a": A, "b": A, "c": A}, {"x": A})
    assert pairs == [("a", "x")]
    changes = diff_manifests({"a": A}, {"x": A, "y": A, "z": A})
    assert changes.renamed == [("a", "x")]
    assert changes.added == ["y", "z"]


def test_forced_full_scan_loads_everything_and_sweeps_everything() -> None:
    old = {"keep": A, "gone": B, "moved": C}
    new = {"keep": A, "fresh": D, "moved2": C}
    changes = diff_manifests(old, new, force_full_scan=True)
    assert changes.full_scan
    assert changes.renamed == []
    assert changes.to_load == sorted(new)
    assert changes.to_remove == sorted(old)
    assert apply_changes(old, changes, new) == new


def test_blob_sha_is_gits() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert blob_sha(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# --- properties ------------------------------------------------------------------------

_paths = st.lists(st.sampled_from(["a", "b", "c", "d", "dir"]), min_size=1, max_size=3).map(
    "/".join
)
_shas = st.sampled_from([A, B, C, D, blob_sha(b"")])  # few values: many collisions/renames
_manifests = st.dictionaries(_paths, _shas, max_size=25)


@settings(max_examples=300, deadline=None)
@given(old=_manifests, new=_manifests)
def test_applying_changes_to_old_yields_new(old: dict[str, str], new: dict[str, str]) -> None:
    assert apply_changes(old, diff_manifests(old, new), new) == new


@settings(max_examples=300, deadline=None)
@given(old=_manifests, new=_manifests)
def test_renames_pair_content_equal_paths_once(old: dict[str, str], new: dict[str, str]) -> None:
    changes = diff_manifests(old, new)
    olds = [o for o, _ in changes.renamed]
    news = [n for _, n in changes.renamed]
    assert len(set(olds)) == len(olds) and len(set(news)) == len(news)
    for before, after in changes.renamed:
        assert old[before] == new[after]
        assert before not in new and after not in old
    # No rename was missed: no deleted blob reappears among the added paths.
    assert not {old[p] for p in changes.deleted} & {new[p] for p in changes.added}


@settings(max_examples=300, deadline=None)
@given(old=_manifests, new=_manifests)
def test_every_path_lands_in_exactly_one_bucket(old: dict[str, str], new: dict[str, str]) -> None:
    changes = diff_manifests(old, new)
    touched_new = changes.added + changes.modified + [n for _, n in changes.renamed]
    touched_old = changes.deleted + changes.modified + [o for o, _ in changes.renamed]
    assert len(touched_new) == len(set(touched_new))
    assert set(touched_new) <= new.keys() and set(touched_old) <= old.keys()
    assert len(touched_new) + changes.unchanged == len(new)
    assert len(touched_old) + changes.unchanged == len(old)
    assert changes.to_load == sorted(changes.to_load)
    assert changes.has_changes == (old != new)


@settings(max_examples=100, deadline=None)
@given(old=_manifests, new=_manifests, seed=st.integers(0, 2**32))
def test_result_does_not_depend_on_insertion_order(
    old: dict[str, str], new: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    old_items, new_items = list(old.items()), list(new.items())
    rng.shuffle(old_items)
    rng.shuffle(new_items)
    assert diff_manifests(dict(old_items), dict(new_items)) == diff_manifests(old, new)

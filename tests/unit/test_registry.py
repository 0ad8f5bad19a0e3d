"""The repository registry, parameter validation and managed clones (real git, no daemons)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from config.errors import ConfigError, ParameterError, RepositoryError
from tasks.repo.registry import Checkouts, RegisteredRepo, Registry, default_name, is_due
from tasks.repo.source_params import (
    Source,
    check_branch,
    check_cron,
    check_names,
    parse_source,
)
from tests.git_support import commit_all, git, make_repo, write

# --- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/PrefectHQ/prefect.git",
        "ssh://git@example.com/org/repo.git",
        "git@github.com:org/repo.git",
        "file:///srv/git/app.git",
        "git://example.com/repo",
    ],
)
def test_urls_are_accepted_as_given(url: str) -> None:
    assert parse_source(url) == Source("url", url)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "source: empty"),
        ("   ", "source: empty"),
        ("ext::sh -c touch% /tmp/pwned", "remote helper"),
        ("ftp://example.com/x.git", "scheme 'ftp'"),
        ("-uhttps://x", "starts with '-'"),
        ("https://", "names no repository"),
        ("/definitely/not/here", "neither an existing folder"),
    ],
)
def test_bad_sources_name_the_parameter(value: str, fragment: str) -> None:
    with pytest.raises(ParameterError, match=r"^source: ") as error:
        parse_source(value)
    assert fragment in str(error.value)
    assert isinstance(error.value, ConfigError)


def test_relative_paths_resolve_against_the_base(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    assert parse_source("repo", base=tmp_path) == Source("path", str(tmp_path / "repo"))


@pytest.mark.parametrize("good", ["main", "feature/x-1", "release-2.0", "a.b"])
def test_branch_names_git_accepts(good: str) -> None:
    assert check_branch(good) == good


@pytest.mark.parametrize("bad", ["-x", "a..b", "a b", "a~1", "x.lock", "a//b", "end/", "@{u}"])
def test_branch_names_git_refuses(bad: str) -> None:
    with pytest.raises(ParameterError, match=r"^branch: "):
        check_branch(bad)


def test_empty_branch_means_default() -> None:
    assert check_branch(None) is None and check_branch("  ") is None


def test_cron_lines_are_checked_and_normalised() -> None:
    assert check_cron("*/15   * * * *") == "*/15 * * * *"
    assert check_cron(None) is None
    with pytest.raises(ParameterError, match=r"^schedule: 'every hour'"):
        check_cron("every hour")
    with pytest.raises(ParameterError, match=r"^schedule: "):
        check_cron("61 * * * *")


def test_unknown_names_list_the_known_ones() -> None:
    assert check_names(None, ["a"]) is None
    assert check_names(["a", "a"], ["a", "b"]) == ["a"]
    with pytest.raises(ParameterError, match=r"names: zz not registered \(known: a, b\)"):
        check_names(["zz"], ["b", "a"])


# --- registry ----------------------------------------------------------------------------


def test_default_names_are_folder_safe() -> None:
    assert default_name(Source("url", "https://x.org/a/My Repo.git/")) == "My_Repo"
    assert default_name(Source("url", "git@h:org/tool.git"), "feat/x") == "tool-feat_x"
    assert default_name(Source("path", "/srv/code/app")) == "app"
    assert default_name(Source("url", "https://x.org/.git")) == "repo"


def test_add_list_remove_round_trip(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    app = registry.add(Source("url", "https://x.org/app.git"), schedule="0 * * * *")
    lib = registry.add(Source("path", "/srv/lib"), branch="dev")
    assert [e.name for e in registry.entries()] == ["app", "lib-dev"]
    assert registry.find("https://x.org/app.git") == [app]
    assert registry.find("lib-dev") == [lib]
    assert registry.remove("app") == [app]
    assert registry.entries() == [lib]
    data = orjson.loads((tmp_path / "registry.json").read_bytes())
    assert data["version"] == 1 and data["repositories"][0]["source"] == "/srv/lib"


def test_adding_again_updates_the_schedule_and_same_names_get_a_suffix(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first = registry.add(Source("url", "https://a.org/app.git"))
    again = registry.add(Source("url", "https://a.org/app.git"), schedule="*/5 * * * *")
    assert again.name == first.name and again.schedule == "*/5 * * * *"
    other = registry.add(Source("url", "https://b.org/app.git"))
    assert other.name.startswith("app-") and other.name != "app"
    assert len(registry.entries()) == 2
    with pytest.raises(ConfigError, match="already registered"):
        registry.add(Source("url", "https://c.org/x.git"), name="app")


def test_removing_an_unknown_key_lists_what_is_registered(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.add(Source("url", "https://a.org/app.git"))
    with pytest.raises(ConfigError, match=r"'nope' is not registered \(registered: app\)"):
        registry.remove("nope")


def test_a_path_entry_matches_the_same_folder_spelled_differently(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    registry = Registry(tmp_path / "home")
    registry.add(Source("path", str(tmp_path / "code")))
    assert registry.find(str(tmp_path / "code" / ".." / "code"))


def test_record_keeps_the_last_good_sync_on_error(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    entry = registry.add(Source("url", "https://a.org/app.git"))
    registry.record(entry.name, at=100.0, commit="abc")
    registry.record(entry.name, at=200.0, error="cannot clone")
    (after,) = registry.entries()
    assert (after.last_synced, after.last_commit, after.last_error) == (
        100.0,
        "abc",
        "cannot clone",
    )
    registry.record("removed-meanwhile", at=300.0)  # no error, no resurrection
    assert [e.name for e in registry.entries()] == [entry.name]


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    threads = [
        threading.Thread(target=registry.add, args=(Source("url", f"https://x.org/r{i}.git"),))
        for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.entries()) == 20
    assert not list(tmp_path.glob(".registry-*")), "no temporary file left behind"


def test_a_corrupt_registry_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not a codeflow registry"):
        Registry(tmp_path).entries()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_due_follows_the_entry_cron() -> None:
    hourly = RegisteredRepo("a", "https://x/a.git", "url", schedule="0 * * * *")
    assert is_due(hourly, _epoch("2024-01-01T12:30:00"))  # never synced
    synced = RegisteredRepo(
        "a", "https://x/a.git", "url", schedule="0 * * * *", last_synced=_epoch("2024-01-01T12:01")
    )
    assert not is_due(synced, _epoch("2024-01-01T12:59:00"))
    assert is_due(synced, _epoch("2024-01-01T13:00:01"))
    unscheduled = RegisteredRepo("b", "/srv/b", "path", last_synced=_epoch("2024-01-01T12:59"))
    assert is_due(unscheduled, _epoch("2024-01-01T13:00"))


# --- managed clones (real git over file://) ------------------------------------------------


def _upstream(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "upstream", {"a.py": "A = 1\n"})
    git(repo, "branch", "-M", "main")
    git(repo, "checkout", "-q", "-b", "dev")
    write(repo, {"dev.py": "D = 1\n"})
    commit_all(repo, "dev")
    git(repo, "checkout", "-q", "main")
    return repo


def test_clone_then_fetch_follows_the_remote_even_after_a_force_push(tmp_path: Path) -> None:
    upstream = _upstream(tmp_path)
    checkouts = Checkouts(tmp_path / "home")
    work = checkouts.ensure(upstream.as_uri(), "up")
    assert work == tmp_path / "home" / "repos" / "up"
    assert (work / "a.py").exists() and not (work / "dev.py").exists()
    write(upstream, {"a.py": "A = 2\n"})
    commit_all(upstream, "second")
    (work / "stray.txt").write_text("left by someone")
    assert (checkouts.ensure(upstream.as_uri(), "up") / "a.py").read_text() == "A = 2\n"
    assert not (work / "stray.txt").exists(), "the managed clone mirrors the remote"
    git(upstream, "reset", "-q", "--hard", "HEAD~1")  # history rewritten upstream
    assert (checkouts.ensure(upstream.as_uri(), "up") / "a.py").read_text() == "A = 1\n"


def test_branches_and_name_clashes(tmp_path: Path) -> None:
    upstream = _upstream(tmp_path)
    checkouts = Checkouts(tmp_path / "home")
    dev = checkouts.ensure(upstream.as_uri(), "up-dev", "dev")
    assert (dev / "dev.py").exists() and git(dev, "branch", "--show-current") == "dev"
    other = make_repo(tmp_path / "other", {"o.py": "O = 1\n"})
    clash = checkouts.ensure(other.as_uri(), "up-dev")
    assert clash != dev and clash.name.startswith("up-dev-") and (clash / "o.py").exists()
    with pytest.raises(RepositoryError, match="has no branch 'nope'"):
        checkouts.ensure(upstream.as_uri(), "up-nope", "nope")
    assert checkouts.remove(other.as_uri(), "up-dev") and not clash.exists()


def test_an_unreachable_url_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"^cannot clone file://.*: ") as error:
        Checkouts(tmp_path / "home").ensure((tmp_path / "missing").as_uri(), "missing")
    assert "\n" not in str(error.value)

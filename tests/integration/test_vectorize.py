"""The vectorize flow end to end: real git repositories, real Redis, real LanceDB, the real
offline embedder, a real (temporary) Prefect API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import redis
import tornado.httpclient

from config import load_settings
from flows.cli.commands import main
from tasks.events.bus import EventBus
from tasks.index.manifests import IndexManifest
from tests.git_support import commit_all, git, make_repo, write
from tests.integration.server_fixtures import live_server, run, unique_stream
from tests.redis_support import RedisProcess

pytestmark = pytest.mark.usefixtures("prefect_harness")

SOURCES: dict[str, str | bytes] = {
    "app/models.py": "class User:\n    def __init__(self, name):\n        self.name = name\n\n"
    "    def greeting(self):\n        return f'hello {self.name}'\n",
    "app/storage.py": "import json\n\n\ndef save_user(user, path):\n"
    "    with open(path, 'w') as f:\n"
    "        json.dump({'name': user.name}, f)\n\n\ndef load_user(path):\n"
    "    with open(path) as f:\n        return json.load(f)['name']\n",
    "app/http_client.py": "def fetch_url(url, timeout=10):\n    import urllib.request\n"
    "    return urllib.request.urlopen(url, timeout=timeout).read()\n",
    "docs/guide.md": "# Guide\n\nRun the parser on a config file to get settings.\n",
    "tests/test_models.py": "from app.models import User\n\ndef test_greeting():\n"
    "    assert User('a').greeting() == 'hello a'\n",
}


@dataclass
class Indexer:
    """Runs codeflow (the flow and the CLI) against one CODEFLOW_HOME."""

    env: dict[str, str]
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    def cli(self, *args: str) -> tuple[int, str, str]:
        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def index(self, path: Path, *extra: str) -> dict[str, Any]:
        code, out, err = self.cli("index", str(path), "--json", *extra)
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    def status(self, path: Path) -> dict[str, Any]:
        code, out, err = self.cli("status", str(path), "--json")
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    def search(self, path: Path, query: str, limit: int = 5) -> list[dict[str, Any]]:
        code, out, err = self.cli(
            "search", query, "--repo", str(path), "--limit", str(limit), "--json"
        )
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    def store_ids(self, path: Path) -> list[str]:
        from config import load_settings
        from tasks.services import services_for

        namespace = self.status(path)["namespace"]
        return sorted(services_for(load_settings(self.env)).store.ids(namespace))


def _indexer(
    home: Path, redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Indexer:
    env = {
        "CODEFLOW_HOME": str(home),
        "REDIS_URL": redis_url,
        "CODEFLOW_TENANT": "t" + uuid.uuid4().hex[:10],
    }
    return Indexer(env, capsys, monkeypatch)


@pytest.fixture
def indexer(
    tmp_path: Path,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Indexer]:
    made = _indexer(tmp_path / "home", redis_url, capsys, monkeypatch)
    yield made
    _drop_tenant(redis_url, made.env["CODEFLOW_TENANT"])


@pytest.fixture
def other_indexer(
    tmp_path: Path,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], Indexer]]:
    """Makes more indexers, each with its own home under ``tmp_path`` and its own tenant."""
    made: list[Indexer] = []

    def make(home: str) -> Indexer:
        made.append(_indexer(tmp_path / home, redis_url, capsys, monkeypatch))
        return made[-1]

    yield make
    for extra in made:
        _drop_tenant(redis_url, extra.env["CODEFLOW_TENANT"])


def _drop_tenant(redis_url: str, tenant: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"cf:{{{tenant}.*", count=1000))
    if keys:
        client.unlink(*keys)


def _evolve(repo: Path) -> None:
    """Commit B: an addition, an edit, a deletion, a rename and a rename-with-edit."""
    write(
        repo,
        {
            "app/search.py": "def find_users(users, prefix):\n"
            "    return [u for u in users if u.name.startswith(prefix)]\n"
        },
    )
    write(
        repo,
        {
            "app/models.py": str(SOURCES["app/models.py"])
            + "\n    def shout(self):\n        return self.greeting().upper()\n"
        },
    )
    (repo / "docs/guide.md").unlink()
    git(repo, "mv", "app/http_client.py", "app/net.py")
    git(repo, "mv", "tests/test_models.py", "tests/test_user_model.py")
    write(
        repo,
        {
            "tests/test_user_model.py": "from app.models import User\n\ndef test_shout():\n"
            "    assert User('a').shout() == 'HELLO A'\n"
        },
    )
    commit_all(repo, "B")


QUERIES = ["save user to a json file", "greeting", "fetch url with timeout", "find users by prefix"]


def test_incremental_index_equals_fresh_index(
    tmp_path: Path, indexer: Indexer, other_indexer: Callable[[str], Indexer]
) -> None:
    repo = make_repo(tmp_path / "repo", SOURCES)
    first = indexer.index(repo)
    assert first["full_scan"] and first["files_total"] == 5 and first["chunks_embedded"] > 0
    _evolve(repo)
    second = indexer.index(repo)
    assert not second["full_scan"]
    # guide.md deleted; the renamed-and-edited test file is a deletion plus an addition.
    assert (second["files_deleted"], second["files_renamed"]) == (2, 1)
    assert second["cache_hits"] > 0, "chunks of renamed files come from the cache"

    fresh = other_indexer("fresh-home")
    fresh.index(repo)
    ours, theirs = indexer.status(repo), fresh.status(repo)
    for field in ("commit", "files_total", "chunks_total", "files"):
        assert ours[field] == theirs[field], field
    assert indexer.store_ids(repo) == fresh.store_ids(repo)
    for query in QUERIES:
        assert _shape(indexer.search(repo, query)) == _shape(fresh.search(repo, query)), query
    assert "docs/guide.md" not in ours["files"] and "app/net.py" in ours["files"]


def test_unchanged_chunks_of_an_edited_file_are_neither_embedded_nor_rewritten(
    tmp_path: Path, indexer: Indexer
) -> None:
    repo = make_repo(tmp_path / "repo", SOURCES)
    first = indexer.index(repo)
    write(repo, {"app/storage.py": str(SOURCES["app/storage.py"]) + "\n\ndef drop_user(path):\n"
                 "    os.remove(path)\n"})  # fmt: skip
    commit_all(repo, "add drop_user")
    second = indexer.index(repo)
    storage = [h for h in indexer.search(repo, "drop_user remove", 10)
               if h["path"] == "app/storage.py"]  # fmt: skip
    assert second["chunks_total"] == first["chunks_total"] + 1
    assert (second["chunks_embedded"], second["chunks_deleted"]) == (1, 0)
    assert second["chunks_unchanged"] >= 2, "save_user and load_user stay as they are"
    assert storage and storage[0]["text"].startswith("def drop_user")


def test_worker_processes_give_the_same_index_as_in_process(
    tmp_path: Path,
    indexer: Indexer,
    other_indexer: Callable[[str], Indexer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small runs chunk and embed in-process; large ones in worker processes. Forcing the
    workers on a small repository must change nothing but where the work ran."""
    import flows.vectorize
    from tasks.embedding.cpu_workers import worker_pool

    repo = make_repo(tmp_path / "repo", SOURCES)
    indexer.index(repo)  # in-process: 5 files
    pooled = other_indexer("pooled-home")
    pooled.env["CODEFLOW_CPU_WORKERS"] = "2"
    monkeypatch.setattr(flows.vectorize, "INLINE_FILES", 0)
    assert pooled.index(repo)["chunks_embedded"] > 0
    assert all(w.pid is not None for w in worker_pool(2).workers), "the workers ran"
    ours, theirs = pooled.status(repo), indexer.status(repo)
    for field in ("files_total", "chunks_total", "files", "skipped"):
        assert ours[field] == theirs[field], field
    assert pooled.store_ids(repo) == indexer.store_ids(repo)
    for query in QUERIES:
        assert pooled.search(repo, query) == indexer.search(repo, query), query


def _shape(hits: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(h["path"], h["start_line"], h["end_line"]) for h in hits]


def test_noop_reindex_does_no_work_and_search_finds_definitions(
    tmp_path: Path, indexer: Indexer
) -> None:
    repo = make_repo(tmp_path / "repo", SOURCES)
    first = indexer.index(repo)
    before = _manifest(indexer, repo)
    again = indexer.index(repo)
    assert (again["files_changed"], again["chunks_embedded"], again["chunks_deleted"]) == (0, 0, 0)
    totals = ("files_total", "chunks_total", "skipped", "commit", "branch", "repo_id")
    assert {k: again[k] for k in totals} == {k: first[k] for k in totals}
    assert again["flow_run_id"] and again["flow_run_id"] != first["flow_run_id"]
    assert _manifest(indexer, repo) == before, "a no-op run commits nothing"
    hits = indexer.search(repo, "load user from json")
    assert hits[0]["path"] == "app/storage.py"
    assert {"path", "start_line", "end_line", "score", "text"} <= hits[0].keys()
    assert hits == sorted(hits, key=lambda h: -h["score"])


def test_searches_are_cached_until_the_index_or_the_ranking_changes(
    tmp_path: Path, indexer: Indexer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.search.hybrid
    from tasks.search.ranking import RANKING_VERSION

    repo = make_repo(tmp_path / "repo", SOURCES)
    indexer.index(repo)
    real, ran = tasks.search.hybrid.hybrid_search, []

    def counted(*args: Any, **kwargs: Any) -> Any:
        ran.append(kwargs["semantic_weight"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks.search.hybrid, "hybrid_search", counted)
    first = indexer.search(repo, "load user from json")
    assert indexer.search(repo, "load user from json") == first and ran == [None]
    monkeypatch.setattr("tasks.search.repository_search.RANKING_VERSION", RANKING_VERSION + 1)
    assert indexer.search(repo, "load user from json") == first and len(ran) == 2
    indexer.env["CODEFLOW_SEMANTIC_WEIGHT"] = "0"  # another weight: another answer
    indexer.search(repo, "load user from json")
    assert ran == [None, None, 0.0]
    del indexer.env["CODEFLOW_SEMANTIC_WEIGHT"]
    monkeypatch.delenv("CODEFLOW_SEMANTIC_WEIGHT")
    write(repo, {"app/extra.py": "def load_user_again(path):\n    return path\n"})
    commit_all(repo, "more")
    indexer.index(repo)
    indexer.search(repo, "load user from json")
    assert len(ran) == 4, "indexing invalidates the repository's cached searches"


def test_interrupted_run_leaves_no_duplicates_or_stale_vectors(
    tmp_path: Path, indexer: Indexer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduce what a process killed between upsert and commit leaves on disk, then re-run."""
    repo = make_repo(tmp_path / "repo", SOURCES)
    indexer.index(repo)
    _evolve(repo)
    import flows.vectorize

    class Killed(BaseException):
        """Stands in for SIGKILL: nothing after the upsert runs, nothing is cleaned up."""

    def killed(*_: object) -> None:
        raise Killed

    monkeypatch.setattr(flows.vectorize, "commit_index", killed)
    for key, value in indexer.env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(Killed):
        flows.vectorize.vectorize_repository(str(repo))
    monkeypatch.undo()
    status_before = indexer.status(repo)
    assert status_before["files_total"] == 5, "the manifest was not committed"
    write(repo, {"app/models.py": "class User:\n    pass\n"})  # and the tree moved on meanwhile
    commit_all(repo, "C")
    indexer.index(repo)
    ids = indexer.store_ids(repo)
    assert len(ids) == len(set(ids))
    manifest_ids = _manifest_ids(indexer, repo)
    assert ids == manifest_ids, "store holds exactly the committed chunks"


# The command, with Redis shut down inside the first embedding batch (after its vectors are
# made, before Prefect commits its cached result and releases the batch's lock).
_REDIS_STOPS = """
import sys, redis, tasks.pipeline.vectorize_tasks as tasks
hand_over = tasks._hand_over
def redis_stops_then(name, vectors):
    try:
        redis.Redis.from_url(sys.argv[1]).shutdown(nosave=True)
    except redis.RedisError:
        pass  # it is down already
    hand_over(name, vectors)
tasks._hand_over = redis_stops_then
from flows.cli.commands import main
sys.exit(main(sys.argv[2:]))
"""


def test_redis_going_away_mid_run_loses_nothing_and_prints_no_traceback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    private_redis: RedisProcess,
) -> None:
    """The embedding cache and the batches' lock pass through, Prefect's cached results go
    unwritten, and the run completes: the store holds exactly the committed chunks, and
    each problem is one warning line on stderr."""
    repo = make_repo(tmp_path / "repo", SOURCES)
    indexer = _indexer(tmp_path / "home", private_redis.url, capsys, monkeypatch)
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, **indexer.env, "CODEFLOW_EMBED_BATCH_SIZE": "2"}  # several batches
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # the session's Prefect server
    command = [sys.executable, "-c", _REDIS_STOPS, private_redis.url, "index", str(repo), "--json"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "without the cross-agent lock" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    private_redis.start()
    ids = indexer.store_ids(repo)
    assert len(ids) == len(set(ids)) == json.loads(done.stdout)["chunks_total"] > 5
    assert ids == _manifest_ids(indexer, repo)


def _manifest(indexer: Indexer, repo: Path) -> IndexManifest:
    from config import load_settings
    from tasks.services import services_for

    status = indexer.status(repo)
    manifest = services_for(load_settings(indexer.env)).manifests.load(
        status["repo_id"], status["branch"]
    )
    assert manifest is not None
    return manifest


def _manifest_ids(indexer: Indexer, repo: Path) -> list[str]:
    return sorted(i for ids in _manifest(indexer, repo).chunks.values() for i in ids)


def test_two_processes_index_the_same_repository_at_once(
    tmp_path: Path, indexer: Indexer, redis_url: str
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {f"pkg/mod{i}.py": f"def function_{i}(x):\n    return x * {i}\n" for i in range(40)},
    )
    env = {**os.environ, **indexer.env, "CODEFLOW_EMBED_BATCH_SIZE": "8"}
    from prefect.settings import PREFECT_API_URL

    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # the session's Prefect server
    cli = [sys.executable, "-m", "flows.cli.commands", "index", str(repo), "--json"]
    procs = [
        subprocess.Popen(
            cli,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outputs]
    summaries = [json.loads(o[0]) for o in outputs]
    assert summaries[0]["chunks_total"] == summaries[1]["chunks_total"] == 40
    ids = indexer.store_ids(repo)
    assert len(ids) == 40 == len(set(ids))
    runs = {s["flow_run_id"] for s in summaries}
    events = [e for _, e in EventBus(redis.Redis.from_url(redis_url)).read(count=100_000)]
    embedded = [
        e
        for e in events
        if e.get("flow_run_id") in runs
        and e.get("task_name") == "embed-batch"
        and e.get("state") == "Completed"
    ]
    assert len(embedded) == 5, "40 chunks in batches of 8 are embedded once, not once per process"


def test_bad_inputs_give_clear_errors(tmp_path: Path, indexer: Indexer) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = {
        str(tmp_path / "missing"): "no such directory",
        str(plain): "not a git repository",
        str(empty): "no commits",
    }
    for path, message in cases.items():
        code, out, err = indexer.cli("index", path)
        assert code == 1 and out == ""
        assert err.startswith("codeflow: error:") and message in err and err.count("\n") == 1, err
    code, _, err = indexer.cli("search", "x", "--repo", str(plain))
    assert code == 1 and "not a git repository" in err


def test_hostile_files_are_skipped_and_counted(tmp_path: Path, indexer: Indexer) -> None:
    files: dict[str, str | bytes] = {
        "ok.py": "def fine():\n    return 1\n",
        "blob.bin": bytes(range(256)) * 64,
        "latin1.py": b"# caf\xe9\ndef cafe():\n    return '\xe9'\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    with open(repo / "huge.txt", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    os.symlink("/etc/passwd", repo / "passwd-link")
    commit_all(repo, "hostile")
    summary = indexer.index(repo)
    status = indexer.status(repo)
    assert set(status["files"]) == {"ok.py", "latin1.py"}
    assert summary["skipped"].get("binary", 0) + summary["skipped"].get("oversized", 0) >= 2
    code, out, _ = indexer.cli("index", str(repo))  # the text summary names the skips too
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(summary["skipped"].items()))
    assert code == 0 and out.rstrip().endswith(f"; skipped {counts}"), out
    hits = indexer.search(repo, "passwd root")
    assert all("root:x:0:0" not in h["text"] for h in hits)
    shutil.rmtree(repo)


async def http_get(url: str, **params: Any) -> tuple[int, Any]:
    """GET ``url`` with ``params``: the status and the JSON body."""
    reply = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{url}?{urlencode(params)}", raise_error=False
    )
    return reply.code, orjson.loads(reply.body)


def test_http_search_answers_as_the_cli_does(tmp_path: Path, indexer: Indexer) -> None:
    """``GET /api/search`` on the realtime server: the CLI's hits, clear HTTP errors."""
    repo = make_repo(tmp_path / "repo", SOURCES)
    unindexed = make_repo(tmp_path / "other", {"x.py": "x = 1\n"})
    indexer.index(repo)
    query = "load user from json"

    async def scenario() -> dict[str, Any]:
        settings = load_settings(indexer.env)
        async with live_server(settings, indexer.env["REDIS_URL"], unique_stream()) as server:
            token = server.token("repo:*")

            async def ask(**params: Any) -> tuple[int, Any]:
                return await http_get(server.url("/api/search"), **params)

            code, body = await ask(q=query, repo=str(repo), limit=3, token=token)
            assert code == 200, body
            assert (await ask(q=query, repo=str(repo)))[0] == 401
            assert (await ask(q=" ", repo=str(repo), token=token))[0] == 400
            assert (await ask(q=query, repo=str(repo), limit="ten", token=token))[0] == 400
            assert (await ask(q=query, repo=str(repo), limit=0, token=token))[0] == 400
            not_indexed = await ask(q=query, repo=str(unindexed), token=token)
            assert not_indexed[0] == 404 and "no indexed repository" in not_indexed[1]["error"]
            assert (await ask(q=query, repo=str(tmp_path / "missing"), token=token))[0] == 404
            return dict(body)

    body = run(scenario())
    assert body["query"] == query and body["repo"] == str(repo)
    assert body["results"] == indexer.search(repo, query, limit=3)
    assert body["results"][0]["path"] == "app/storage.py"


def test_batch_vectors_without_a_handoff_come_from_the_embedding_cache(
    codeflow_env: dict[str, str],
) -> None:
    """An embed-batch answered from Prefect's result cache hands over no vectors: they are
    read from the embedding cache, and one the cache lost is embedded again and stored."""
    from tasks.pipeline.vectorize_tasks import PrefectSteps, drop_handoffs, embed_batch
    from tasks.services import services_for

    settings = load_settings(codeflow_env)
    rt = services_for(settings)
    assert rt.results_url is not None
    batch_vectors = PrefectSteps(settings, ("ns", "repo", "main"), rt.results_url).vectors_of
    texts = ["def first(): ...", "def second(): ...", "def third(): ..."]
    keys = rt.embeddings.keys(texts)
    assert embed_batch.fn(settings, keys, texts, False, "h1") == 3
    expected = batch_vectors("h1", keys, texts)  # handed over in-process
    assert expected.shape == (3, rt.embedder_identity[1])
    rt.embedding_store.delete(keys[1])
    assert batch_vectors("h1", keys, texts).tolist() == expected.tolist()
    assert sorted(rt.embeddings.lookup(keys)) == [0, 1, 2], "the lost vector is stored again"
    embed_batch.fn(settings, keys, texts, False, "h2")
    drop_handoffs(["h2"])  # a failed run's vectors are not kept waiting
    rt.embedding_store.delete(*keys)
    assert batch_vectors("h2", keys, texts).tolist() == expected.tolist()
    assert sorted(rt.embeddings.lookup(keys)) == [0, 1, 2], "re-embedded, not handed over"


def test_related_from_the_command_line_and_over_http(indexer: Indexer, tmp_path: Path) -> None:
    """`codeflow related FILE:LINE` finds the code sharing the place's names; the server's
    /api/related answers the same, and refuses what it cannot read."""
    repo = make_repo(tmp_path / "repo", SOURCES)
    indexer.index(repo)
    code, out, err = indexer.cli("related", f"{repo}/app/models.py:5", "--limit", "3", "--json")
    assert code == 0, err
    hits = json.loads(out)
    # the test that calls greeting(), and the code that stores users
    assert {"tests/test_models.py", "app/storage.py"} == {h["path"] for h in hits[:3]}
    assert all(h["path"] != "app/models.py" for h in hits)
    same, _, _ = indexer.cli("related", "app/models.py:5", "--repo", str(repo), "--json")
    assert same == 0
    bad = indexer.cli("related", "app/models.py", "--repo", str(repo))
    assert bad[0] == 1 and "expected FILE:LINE" in bad[2]

    async def scenario() -> list[tuple[int, Any]]:
        settings = load_settings(indexer.env)
        async with live_server(settings, indexer.env["REDIS_URL"], unique_stream()) as server:
            token = server.token("repo:*")

            async def ask(**params: Any) -> tuple[int, Any]:
                return await http_get(server.url("/api/related"), **params)

            place = {"repo": str(repo), "file": "app/models.py", "line": 5, "limit": 3}
            return [
                await ask(**place, token=token),
                await ask(**place),
                await ask(**{**place, "line": "five"}, token=token),
                await ask(**{**place, "file": "app/nothing.py"}, token=token),
            ]

    ok, anonymous, bad_line, unknown = run(scenario())
    assert ok[0] == 200 and ok[1]["results"] == hits
    assert (anonymous[0], bad_line[0], unknown[0]) == (401, 400, 400)

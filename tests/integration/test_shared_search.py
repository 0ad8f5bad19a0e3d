"""Two machines sharing one bucket: ``codeflow index`` from one CODEFLOW_HOME writes tables,
manifests and pending notes to S3 (moto's server), and a second, empty CODEFLOW_HOME (no
checkout, no shared disk) searches the repository by its ID, on the command line and over
the HTTP API, with the same hits as the first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import tornado.httpclient

from config import load_settings
from tests.git_support import git, make_repo
from tests.integration import test_vectorize
from tests.integration.server_fixtures import LiveServer, live_server, run, unique_stream
from tests.integration.test_vectorize import QUERIES, SOURCES, Indexer
from tests.s3_support import Bucket

pytestmark = pytest.mark.usefixtures("prefect_harness")
indexer = test_vectorize.indexer  # a home, the test Redis, a tenant
other_indexer = test_vectorize.other_indexer
HIDDEN = b'{"error":"no indexed repository you may read at <repo>"}'


def shared(made: Indexer, bucket: Bucket) -> Indexer:
    made.env.update(bucket.env())
    return made


def search_by_id(reader: Indexer, repo_id: str, query: str, *extra: str) -> list[Any]:
    code, out, err = reader.cli("search", query, "--repo", repo_id, "--limit", "5", "--json",
                                *extra)  # fmt: skip
    assert code == 0, err
    return orjson.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def indexed(
    tmp_path: Path, indexer: Indexer, other_indexer: Callable[[str], Indexer], bucket: Bucket
) -> tuple[Indexer, Indexer, Path, str]:
    """A repository indexed into the bucket from one home; a reader with another home."""
    writer = shared(indexer, bucket)
    repo = make_repo(tmp_path / "repo", SOURCES)
    assert writer.index(repo)["files_total"] == 5
    reader = shared(other_indexer("reader-home"), bucket)
    return writer, reader, repo, writer.status(repo)["repo_id"]


def test_a_second_home_searches_by_repository_id(
    indexed: tuple[Indexer, Indexer, Path, str], bucket: Bucket
) -> None:
    writer, reader, repo, repo_id = indexed
    for query in QUERIES:
        assert search_by_id(reader, repo_id, query) == writer.search(repo, query), query
    code, out, err = reader.cli("status", repo_id, "--json")
    assert code == 0, err
    assert orjson.loads(out)["files"] == writer.status(repo)["files"]
    assert any(".lance/_versions/" in key for key in bucket.objects())
    for home in (writer, reader):
        root = Path(home.env["CODEFLOW_HOME"])
        leftovers = [root / "lancedb", root / "manifests", root / "registry.json"]
        assert not [p for p in leftovers if p.exists()], "written to one machine's disk"


def test_several_indexed_branches_ask_for_one(
    indexed: tuple[Indexer, Indexer, Path, str],
) -> None:
    writer, reader, repo, repo_id = indexed
    git(repo, "checkout", "-q", "-b", "feature/x")
    writer.index(repo)
    code, _, err = reader.cli("search", "greeting", "--repo", repo_id, "--json")
    assert code != 0 and "several branches (feature_x, main)" in err and "\n" not in err.strip()
    expected = writer.search(repo, "greeting")
    assert search_by_id(reader, repo_id, "greeting", "--branch", "feature/x") == expected
    assert search_by_id(reader, repo_id, "greeting", "--branch", "main") == expected
    code, out, err = reader.cli("status", repo_id, "--branch", "feature/x", "--json")
    assert code == 0 and orjson.loads(out)["branch"] == "feature/x", err
    place = f"{next(iter(writer.status(repo)['files']))}:1"
    code, out, err = reader.cli("related", place, "--repo", repo_id, "--branch", "main", "--json")
    assert code == 0 and orjson.loads(out), err


async def get(server: LiveServer, path: str, **params: Any) -> tuple[int, bytes]:
    reply = await tornado.httpclient.AsyncHTTPClient().fetch(
        server.url(f"{path}?{urlencode(params)}"), raise_error=False
    )
    return reply.code, reply.body


def test_the_http_api_searches_by_repository_id(
    indexed: tuple[Indexer, Indexer, Path, str],
) -> None:
    """A server with the reader's settings (no checkout) answers by ID with a ``repo:<id>``
    grant; an ungranted, unknown or unindexed ID and branch get the one hidden 404."""
    writer, reader, repo, repo_id = indexed
    expected = writer.search(repo, "load user from json", limit=3)
    unknown = "0123456789abcdef"

    async def scenario() -> list[tuple[int, bytes]]:
        settings = load_settings(reader.env)
        async with live_server(settings, reader.env["REDIS_URL"], unique_stream()) as server:
            mine, everything = server.token(f"repo:{repo_id}"), server.token("repo:*")
            ask: list[dict[str, Any]] = [
                {"repo": repo_id, "token": mine},
                {"repo": repo_id, "token": everything, "branch": "main"},
                {"repo": repo_id, "token": server.token(f"repo:{unknown}")},
                {"repo": unknown, "token": everything},
                {"repo": repo_id, "token": mine, "branch": "nope"},
            ]
            answers = [
                await get(server, "/api/search", q="load user from json", limit=3, **params)
                for params in ask
            ]
            answers.append(await get(server, "/api/related", repo=repo_id, token=mine,
                                     file="app/storage.py", line=9))  # fmt: skip
            return answers

    *found, related = run(scenario())
    for code, body in found[:2]:
        assert code == 200, body
        assert orjson.loads(body)["results"] == expected
    hidden = [(code, body.replace(b"0123456789abcdef", b"<repo>").replace(
        repo_id.encode(), b"<repo>")) for code, body in found[2:]]  # fmt: skip
    assert set(hidden) == {(404, HIDDEN)}
    assert related[0] == 200 and orjson.loads(related[1])["results"]

"""Scoped access to the server's search API: a real indexed repository (the flow on a real
Prefect API, Redis, LanceDB and the offline embedder) and a real server on a socket.

A token reads a repository only with a ``repo:<id>`` grant (exact, prefix or ``*``); one
that grants no repository is refused (403) before any path is looked at; and every reason a
repository cannot be read answers the same 404, byte for byte."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import tornado.httpclient

from config import load_settings
from tasks.repo.git_repository import GitRepository
from tests.git_support import make_repo
from tests.integration import test_vectorize
from tests.integration.server_fixtures import LiveServer, live_server, run, unique_stream
from tests.integration.test_vectorize import SOURCES, Indexer

pytestmark = pytest.mark.usefixtures("prefect_harness")
indexer = test_vectorize.indexer  # the same fixture: a home, the test Redis, a tenant

QUERY = "load user from json"
HIDDEN = b'{"error":"no indexed repository you may read at <repo>"}'


@pytest.fixture
def places(tmp_path: Path, indexer: Indexer) -> dict[str, Path]:
    """An indexed repository, one never indexed, a plain folder and a path that is not."""
    repo = make_repo(tmp_path / "repo", SOURCES)
    indexer.index(repo)
    plain = tmp_path / "plain"
    plain.mkdir()
    return {
        "repo": repo,
        "unindexed": make_repo(tmp_path / "other", {"x.py": "x = 1\n"}),
        "plain": plain,
        "missing": tmp_path / f"missing-{uuid.uuid4().hex[:6]}",
    }


def repo_id(path: Path) -> str:
    with GitRepository.open(path) as repo:
        return repo.repo_id


async def get(server: LiveServer, path: str, **params: Any) -> tuple[int, bytes]:
    """GET ``path`` with ``params``: the status and the raw body."""
    reply = await tornado.httpclient.AsyncHTTPClient().fetch(
        server.url(f"{path}?{urlencode(params)}"), raise_error=False
    )
    return reply.code, reply.body


def normalized(answer: tuple[int, bytes], repo: Path) -> tuple[int, bytes]:
    """The answer with the ``repo`` it echoes replaced by ``<repo>``."""
    code, body = answer
    return code, body.replace(orjson.dumps(str(repo))[1:-1], b"<repo>")


def test_repository_grants_open_search(indexer: Indexer, places: dict[str, Path]) -> None:
    """Exact, prefix and ``*`` grants search the repository, also from a sub-folder."""
    repo, expected = places["repo"], indexer.search(places["repo"], QUERY, limit=3)
    rid = repo_id(repo)

    async def scenario() -> list[tuple[int, bytes]]:
        settings = load_settings(indexer.env)
        async with live_server(settings, indexer.env["REDIS_URL"], unique_stream()) as server:
            grants = [f"repo:{rid}", f"repo:{rid[:3]}*", "repo:*", "*"]
            answers = [
                await get(server, "/api/search", q=QUERY, repo=str(repo), limit=3,
                          token=server.token(g, "runs"))
                for g in grants
            ]  # fmt: skip
            token = server.token(f"repo:{rid}")
            answers.append(
                await get(server, "/api/search", q=QUERY, repo=str(repo / "app"), limit=3,
                          token=token)
            )  # fmt: skip
            return answers

    for code, body in run(scenario()):
        assert code == 200, body
        assert orjson.loads(body)["results"] == expected


def test_what_a_token_may_not_read_answers_one_404(
    indexer: Indexer, places: dict[str, Path]
) -> None:
    """Another repository's grant, a repository never indexed, a plain folder and a missing
    path: the same status and body (the echoed path aside), for search and related."""
    other_grant = f"repo:{repo_id(places['unindexed'])}"

    async def scenario() -> list[tuple[int, bytes]]:
        settings = load_settings(indexer.env)
        async with live_server(settings, indexer.env["REDIS_URL"], unique_stream()) as server:
            answers = []
            for grant in (other_grant, "repo:*"):
                token = server.token(grant)
                for name in ("repo", "unindexed", "plain", "missing"):
                    if (grant, name) == ("repo:*", "repo"):
                        continue  # readable
                    where = places[name]
                    answers.append(normalized(
                        await get(server, "/api/search", q=QUERY, repo=str(where), token=token),
                        where))  # fmt: skip
                    answers.append(normalized(
                        await get(server, "/api/related", repo=str(where), file="app/models.py",
                                  line=5, token=token),
                        where))  # fmt: skip
            return answers

    answers = run(scenario())
    assert len(answers) == 14
    assert set(answers) == {(404, HIDDEN)}


def test_tokens_without_a_repository_grant_are_refused(
    indexer: Indexer, places: dict[str, Path]
) -> None:
    """401 without a valid token; 403 for a valid one granting no repository, whatever it
    asks for (nothing about the path is looked at)."""
    repo = str(places["repo"])

    async def scenario() -> list[tuple[int, bytes]]:
        settings = load_settings(indexer.env)
        async with live_server(settings, indexer.env["REDIS_URL"], unique_stream()) as server:
            answers = []
            for rooms in (("run:1",), ("runs", "sandbox", "run:*")):
                token = server.token(*rooms)
                for where in (repo, str(places["missing"]), ""):
                    answers.append(await get(server, "/api/search", q=QUERY, repo=where,
                                             token=token))  # fmt: skip
                answers.append(await get(server, "/api/related", repo=repo, token=token))
            forged = server.token("*")[:-2] + "xx"
            answers.append(await get(server, "/api/search", q=QUERY, repo=repo))
            answers.append(await get(server, "/api/search", q=QUERY, repo=repo, token=forged))
            answers.append(await get(server, "/api/related", repo=repo, file="a", line=1))
            return answers

    *refused, anonymous, forged, anonymous_related = run(scenario())
    assert {code for code, _ in refused} == {403} and len({body for _, body in refused}) == 1
    assert "grants no repository" in orjson.loads(refused[0][1])["error"]
    assert [anonymous[0], forged[0], anonymous_related[0]] == [401, 401, 401]

"""Where Prefect keeps the embedding batches' cached results: a storage block of our own over
codeflow's Redis client, so that it works wherever codeflow's Redis does (a plain Redis, a
Redis Cluster, a Sentinel's master).

prefect-redis's ``RedisDatabase`` builds a plain ``redis.Redis`` for every read and write:
on a Redis Cluster each call on a key of another master fails with MOVED, and a cluster has
no database 1 to keep results apart. Here:

- the client is :func:`~tasks.redis_io.connections.connect`'s (one per URL and process);
- on a plain Redis results stay in database ``RESULTS_DB`` under the keys Prefect names; on a
  cluster they live in database 0 under ``RESULTS_PREFIX`` (one key per result, so they
  spread over every master: no command touches two of them);
- every key gets the TTL ``key_ttl``;
- **only JSON is read back.** A record whose serializer is not ``json`` (a pickle written by
  some other client of the same Redis) is refused before Prefect could unpickle it; Prefect
  then treats it as a miss and runs the task.

>>> storage = RedisResults(connection_url=url, key_prefix="", key_ttl=86400)   # doctest: +SKIP
>>> storage.save("codeflow-results", overwrite=True)                            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from prefect.filesystems import WritableFileSystem
from pydantic import Field, SecretStr

from tasks.redis_io.connections import SyncClient, connect

#: Results are megabytes at most (vectors are handed over in-process, not through them),
#: written by batch flows: a longer timeout than interactive calls.
TIMEOUT_S = 10.0


class RedisResults(WritableFileSystem):
    """Prefect result storage on codeflow's Redis (plain, cluster or Sentinel); JSON only."""

    _block_type_name = "Codeflow Redis Results"

    connection_url: SecretStr = Field(description="redis:// or unix:// URL of any node")
    key_prefix: str = Field(default="", description="prefix of every result key")
    key_ttl: int | None = Field(default=None, gt=0, description="TTL of every key, seconds")

    def read_path(self, path: str, _sync: bool = True) -> bytes:  # type: ignore[override]
        """The record at ``path`` if it is JSON; raises for a missing or non-JSON record."""
        raw: Any = self._client().get(self.key_prefix + path)
        if raw is None:
            raise FileNotFoundError(f"no result {path!r} in Redis")
        return require_json_record(raw)

    def write_path(  # type: ignore[override]
        self, path: str, content: bytes, _sync: bool = True
    ) -> None:
        self._client().set(self.key_prefix + path, content, ex=self.key_ttl)

    async def aread_path(self, path: str) -> bytes:
        return await asyncio.to_thread(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> None:
        await asyncio.to_thread(self.write_path, path, content)

    def _client(self) -> SyncClient:
        return _client_for(self.connection_url.get_secret_value())


@functools.cache
def _client_for(url: str) -> SyncClient:
    return connect(url, timeout_s=TIMEOUT_S)


def require_json_record(raw: bytes) -> bytes:
    """``raw`` if it is a Prefect result record serialized as JSON; ``ValueError`` if not."""
    try:
        record = orjson.loads(raw)
        serializer = record["metadata"]["serializer"]["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError("refusing a cached result that is not a JSON result record") from exc
    if serializer != "json":
        raise ValueError(f"refusing a cached result serialized with {serializer!r}, not JSON")
    return raw

"""What a task needs to know about running inside a Dask worker process.

A Dask worker may be on another machine: it cannot reach the flow's embedded Redis (a Unix
socket under the flow's ``CODEFLOW_HOME``), and starting one of its own would split the
embedding cache, the locks and the events in two. So inside a worker, a task (and a state
hook) without ``REDIS_URL`` refuses to run instead of starting a server.

>>> in_dask_worker()
False
"""

from __future__ import annotations

import sys

from config import Settings
from config.errors import SettingsError
from tasks.redis_io.connections import redis_url_for

NEEDS_REDIS = (
    "REDIS_URL is not set: tasks on a Dask cluster share the flow's Redis (the embedding "
    "cache, locks, events); set REDIS_URL to a server every Dask worker can reach"
)


def in_dask_worker() -> bool:
    """Whether this code runs in a Dask worker's task (never imports ``distributed``)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def require_shared_redis(settings: Settings) -> Settings:
    """``settings``, unless this is a Dask worker and they name no Redis server."""
    if settings.redis_url is None and in_dask_worker():
        raise SettingsError(NEEDS_REDIS, variable="REDIS_URL")
    return settings


def shippable(settings: Settings) -> Settings:
    """``settings`` to ship to tasks in other processes of this machine: naming the Redis
    server this process uses (the embedded one, started if needed, when ``REDIS_URL`` is
    unset), so that no worker process starts a server of its own."""
    if settings.redis_url is not None:
        return settings
    return settings.model_copy(update={"redis_url": redis_url_for(settings)})

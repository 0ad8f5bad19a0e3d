"""The embedding batches' lock manager on a real Redis server: its locks expire, and a Redis
outage lets a batch run without one instead of failing it."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal

import pytest
import redis

from tasks.pipeline.batch_locks import BatchLockManager
from tests.redis_support import RedisProcess

LOCK_MESSAGE = "without the cross-agent lock"


def _pttl_ms(server: RedisProcess, key: str) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        return int(client.pttl(f"lock:{key}"))
    finally:
        client.close()


def test_locks_expire_so_a_killed_holder_cannot_hold_up_a_batch_for_good(
    private_redis: RedisProcess,
) -> None:
    manager = BatchLockManager(private_redis.url, hold_s=30)
    assert manager.acquire_lock("batch-1", "run-a")  # as Prefect asks: no hold timeout
    assert 0 < _pttl_ms(private_redis, "batch-1") <= 30_000
    assert manager.acquire_lock("batch-2", "run-a", hold_timeout=5)  # Prefect's own wins
    assert 0 < _pttl_ms(private_redis, "batch-2") <= 5_000
    manager.release_lock("batch-1", "run-a")
    assert _pttl_ms(private_redis, "batch-1") == -2  # gone


def test_a_held_lock_still_keeps_a_second_agent_out(private_redis: RedisProcess) -> None:
    first, second = BatchLockManager(private_redis.url), BatchLockManager(private_redis.url)
    assert first.acquire_lock("batch", "run-a")
    assert not second.acquire_lock("batch", "run-b", acquire_timeout=0)
    first.release_lock("batch", "run-a")
    assert second.acquire_lock("batch", "run-b", acquire_timeout=0)
    second.release_lock("batch", "run-b")


def test_a_lock_left_by_a_dead_run_holds_a_batch_up_for_wait_s_only(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    dead = BatchLockManager(private_redis.url)
    assert dead.acquire_lock("batch", "killed-run")  # never released: the run was killed
    manager = BatchLockManager(private_redis.url, wait_s=0.2)
    with caplog.at_level(logging.WARNING, logger="tasks.pipeline.batch_locks"):
        assert manager.acquire_lock("batch", "next-run")  # as Prefect asks: no timeout
        assert manager.wait_for_lock("batch")
    assert any("stayed locked" in r.getMessage() for r in caplog.records)
    assert manager.is_lock_holder("batch", "next-run")
    manager.release_lock("batch", "next-run")
    assert _pttl_ms(private_redis, "batch") > 0, "the dead run's lock is left to expire"
    assert not manager.acquire_lock("batch", "third-run", acquire_timeout=0)  # asked: no


def test_an_outage_lets_batches_run_unlocked_says_so_once_then_locks_again(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    manager = BatchLockManager(private_redis.url)
    private_redis.kill()
    with caplog.at_level(logging.WARNING, logger="tasks.pipeline.batch_locks"):
        assert manager.acquire_lock("batch", "run-a")
        assert manager.is_lock_holder("batch", "run-a")
        assert not manager.is_locked("batch")
        assert manager.wait_for_lock("batch", timeout=1)
        manager.release_lock("batch", "run-a")  # no error: nothing was locked
        assert not manager.is_lock_holder("batch", "run-a")
        assert manager.acquire_lock("batch", "run-b")
        manager.release_lock("batch", "run-b")
    warnings = [r for r in caplog.records if LOCK_MESSAGE in r.getMessage()]
    assert len(warnings) == 1
    private_redis.start()
    assert manager.acquire_lock("batch", "run-c")
    assert _pttl_ms(private_redis, "batch") > 0  # a real lock again
    manager.release_lock("batch", "run-c")


def test_a_hung_redis_times_out_instead_of_holding_up_the_batch(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopped (SIGSTOP) server accepts connections and never answers. redis-py 8's
    clients time out after 5 s by default (prefect-redis sets no timeout of its own), and
    the batch then goes on unlocked."""
    manager = BatchLockManager(private_redis.url)
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="tasks.pipeline.batch_locks"):
            assert manager.acquire_lock("batch", "run-a")
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert any(LOCK_MESSAGE in r.getMessage() for r in caplog.records)
    manager.release_lock("batch", "run-a")


def test_the_async_side_behaves_the_same(private_redis: RedisProcess) -> None:
    manager = BatchLockManager(private_redis.url, hold_s=30)

    async def locked_then_outage() -> tuple[bool, int, bool, bool]:
        # (not released: prefect-redis's release_lock cannot release an async lock, which
        # is one more reason for locks to expire)
        held = await manager.aacquire_lock("batch", "run-a")
        ttl = _pttl_ms(private_redis, "batch")
        private_redis.kill()
        unlocked = await manager.aacquire_lock("other-batch", "run-b")
        waited = await manager.await_for_lock("other-batch", timeout=1)
        manager.release_lock("other-batch", "run-b")
        return held, ttl, unlocked, waited

    held, ttl, unlocked, waited = asyncio.run(locked_then_outage())
    assert held and 0 < ttl <= 30_000
    assert unlocked and waited


def test_a_pickled_manager_keeps_its_hold_time(private_redis: RedisProcess) -> None:
    copy = pickle.loads(pickle.dumps(BatchLockManager(private_redis.url, hold_s=12)))
    assert copy.acquire_lock("batch", "run-a")
    assert 0 < _pttl_ms(private_redis, "batch") <= 12_000
    copy.release_lock("batch", "run-a")

"""The pure parts of Redis topology detection and of the JSON-only result storage."""

from __future__ import annotations

import json

import pytest

from tasks.pipeline.result_storage import require_json_record
from tasks.redis_io.connections import with_db
from tasks.redis_io.topology import split_master, where


def test_the_sentinel_master_option_is_taken_out_of_the_url() -> None:
    url = "redis://:pw@10.0.0.5:26379/0?sentinel_master=cache&socket_keepalive=true"
    assert split_master(url) == ("redis://:pw@10.0.0.5:26379/0?socket_keepalive=true", "cache")
    assert split_master("redis://h:1/0") == ("redis://h:1/0", None)
    unix = "unix:///run/redis.sock?db=2"
    assert split_master(unix) == (unix, None)
    assert split_master(unix + "&sentinel_master=m") == (unix, "m")


def test_results_keep_the_master_option_in_their_database() -> None:
    assert (
        with_db("redis://h:26379/0?sentinel_master=m", 1) == "redis://h:26379/1?sentinel_master=m"
    )


def test_messages_name_the_server_without_credentials() -> None:
    assert where("redis://user:secret@example.org:7000/0") == "example.org:7000"
    assert where("redis://example.org") == "example.org:6379"
    assert where("unix:///run/redis.sock?db=2") == "/run/redis.sock"


def _record(serializer: str) -> bytes:
    return json.dumps({"metadata": {"serializer": {"type": serializer}}, "result": "1"}).encode()


def test_only_json_result_records_are_read_back() -> None:
    assert require_json_record(_record("json")) == _record("json")
    with pytest.raises(ValueError, match="pickle"):
        require_json_record(_record("pickle"))
    for bad in (b"\x80\x04K\x01.", b"[]", b'{"metadata": {}}'):
        with pytest.raises(ValueError, match="not a JSON result record"):
            require_json_record(bad)

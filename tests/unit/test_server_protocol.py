"""Pure parts of the realtime server: wire format, flow control, tokens."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import load_settings
from config.errors import ProtocolError, TokenError
from server.auth import Grant, issue_token, token_secret, verify_token
from server.outbox import Outbox, TokenBucket
from server.protocol import (
    ErrorCode,
    Ping,
    Subscribe,
    Unsubscribe,
    coalesce_key,
    encode_error,
    encode_event_frame,
    parse_client_message,
    parse_stream_id,
)

SECRET = b"s" * 32


# ---- protocol ------------------------------------------------------------------------------


def test_parses_the_three_client_messages() -> None:
    assert parse_client_message('{"type":"ping"}') == Ping()
    assert parse_client_message(b'{"type":"unsubscribe","room":"runs"}') == Unsubscribe("runs")
    assert parse_client_message('{"type":"subscribe","room":"run:a-1","since":"17-2"}') == (
        Subscribe("run:a-1", "17-2")
    )
    assert parse_client_message('{"type":"subscribe","room":"repo:x/y"}') == Subscribe("repo:x/y")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", ErrorCode.BAD_REQUEST),
        ("null", ErrorCode.BAD_REQUEST),
        ('"ping"', ErrorCode.BAD_REQUEST),
        ('{"type":"subscribe"}', ErrorCode.BAD_REQUEST),
        ('{"type":"subscribe","room":"run:"}', ErrorCode.BAD_REQUEST),
        ('{"type":"subscribe","room":"run:a b"}', ErrorCode.BAD_REQUEST),
        ('{"type":"subscribe","room":"runs","since":5}', ErrorCode.BAD_REQUEST),
        ('{"type":"subscribe","room":"runs","since":"1-2-3"}', ErrorCode.BAD_REQUEST),
        ('{"type":"publish","room":"runs"}', ErrorCode.BAD_REQUEST),
        ('{"type":"ping","x":"' + "y" * 5000 + '"}', ErrorCode.TOO_LARGE),
    ],
)
def test_rejects_bad_messages_with_a_code(raw: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code is code


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_input_parses_or_raises_protocol_error(raw: bytes | str) -> None:
    try:
        parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.message


@given(
    st.sampled_from(["runs", "run:x", "repo:a/b"]),
    st.integers(0, 2**40),
    st.dictionaries(
        st.text(max_size=8), st.integers(-(2**53), 2**53) | st.text(max_size=8), max_size=5
    ),
)
def test_event_frame_is_valid_json_with_the_event_spliced(
    room: str, ms: int, event: dict[str, object]
) -> None:
    frame = orjson.loads(encode_event_frame(room, f"{ms}-0", orjson.dumps(event)))
    assert frame == {"type": "event", "room": room, "id": f"{ms}-0", "event": event}


def test_error_frames_and_stream_ids() -> None:
    assert orjson.loads(encode_error(ErrorCode.FORBIDDEN, "no")) == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
    }
    assert parse_stream_id("10-2") > parse_stream_id("9-30")  # numeric, not text, order
    assert parse_stream_id(b"7") == (7, 0)
    with pytest.raises(ValueError, match="not a stream id"):
        parse_stream_id("abc")


def test_only_progress_events_coalesce() -> None:
    progress = {"kind": "progress", "flow_run_id": "r", "task_run_id": "t", "unit": "files"}
    assert coalesce_key("run:r", progress) == ("run:r", "r", "t/files")
    chunks = {**progress, "unit": "chunks"}
    assert coalesce_key("run:r", chunks) != coalesce_key("run:r", progress)
    assert coalesce_key("run:r", {**progress, "kind": "task_run.state"}) is None


# ---- flow control --------------------------------------------------------------------------


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(10.0) == 0.0  # refills at most to the burst
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.0) > 0


def test_outbox_coalesces_progress_in_place_and_never_drops_others() -> None:
    box = Outbox(capacity=3)
    assert box.push(b"p1", 1.0, "k")
    assert box.push(b"s1", 2.0, None)
    assert box.push(b"p2", 3.0, "k")  # replaces p1, keeps its place before s1
    assert box.push(b"s2", 4.0, None)
    assert len(box) == 3 and box.coalesced == 1
    assert not box.push(b"s3", 5.0, None)  # full: the caller disconnects
    assert [box.pop().data for _ in range(3)] == [b"p2", b"s1", b"s2"]  # type: ignore[union-attr]
    assert box.pop() is None
    assert box.push(b"p3", 6.0, "k")  # the key is free again once popped
    assert box.pop().data == b"p3"  # type: ignore[union-attr]


# ---- tokens --------------------------------------------------------------------------------


def test_token_round_trip_and_grants() -> None:
    grant = verify_token(SECRET, issue_token(SECRET, ["runs", "run:*"], ttl_s=60))
    assert grant.allows("runs") and grant.allows("run:abc")
    assert not grant.allows("repo:abc") and not grant.allows("run")
    assert Grant(frozenset({"*"}), 0).allows("repo:z")
    assert not grant.expired()


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "abc.def.ghi",
        jwt.encode({"rooms": ["*"], "exp": 2**33}, b"other" * 8, algorithm="HS256"),
        jwt.encode({"rooms": ["*"], "exp": 100}, SECRET, algorithm="HS256"),
        jwt.encode({"rooms": ["*"]}, SECRET, algorithm="HS256"),
        jwt.encode({"rooms": "runs", "exp": 2**33}, SECRET, algorithm="HS256"),
        jwt.encode({"rooms": ["*"], "exp": 2**33}, None, algorithm="none"),  # type: ignore[arg-type]
    ],
)
def test_bad_tokens_are_refused(token: str | None) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, token)


def test_issue_token_validates_arguments() -> None:
    with pytest.raises(TokenError):
        issue_token(SECRET, [], 60)
    with pytest.raises(TokenError):
        issue_token(SECRET, ["runs"], 0)


def test_token_secret_from_settings_or_a_private_file(tmp_path: Path) -> None:
    given_secret = load_settings(
        {"CODEFLOW_HOME": str(tmp_path), "CODEFLOW_TOKEN_SECRET": "x" * 40}
    )
    assert token_secret(given_secret) == b"x" * 40
    assert not (tmp_path / "token.secret").exists()

    settings = load_settings({"CODEFLOW_HOME": str(tmp_path / "home")})
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(token_secret(settings))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results[0]) >= 32
    path = tmp_path / "home" / "token.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.secret"]
    assert token_secret(settings) == results[0]

"""The HTTP API's access rules as pure logic: which grants open repositories and features,
and the per-token rate limiter on an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from config import load_settings
from config.errors import AccessDenied, SettingsError
from server.access import SANDBOX, grants_any_repository, repository_room, require_grant
from server.auth import Grant
from server.ratelimit import KeyedRateLimiter, retry_after_s, token_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(*rooms: str) -> Grant:
    return Grant(frozenset(rooms), expires=0.0)


@pytest.mark.parametrize(
    ("rooms", "expected"),
    [
        (("repo:0123456789abcdef",), True),
        (("repo:*",), True),
        (("repo:ab*",), True),
        (("r*",), True),
        (("*",), True),
        (("runs", "run:*"), False),
        (("run:42",), False),
        (("sandbox",), False),
        (("repo:",), False),
        (("repository",), False),
    ],
)
def test_which_grants_open_some_repository(rooms: tuple[str, ...], expected: bool) -> None:
    assert grants_any_repository(grant(*rooms)) is expected


def test_repository_grants_follow_the_room_rules() -> None:
    room = repository_room("ab12cd34ef56ab78")
    assert room == "repo:ab12cd34ef56ab78"
    assert grant("repo:ab*").allows(room) and grant("*").allows(room)
    assert not grant("repo:ff*", "runs").allows(room)


def test_require_grant_names_what_is_missing() -> None:
    require_grant(grant("sandbox"), SANDBOX)
    require_grant(grant("*"), SANDBOX)
    with pytest.raises(AccessDenied, match="--room sandbox") as caught:
        require_grant(grant("repo:*", "runs"), SANDBOX)
    assert caught.value.needed == SANDBOX


def test_limiter_allows_the_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(per_minute=60, burst=3, clock=clock)  # one a second
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    assert limiter.check("a") == pytest.approx(1.0)
    clock.now += 0.25
    assert limiter.check("a") == pytest.approx(0.75)  # a refusal costs nothing
    clock.now += 0.75
    assert limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(1.0)
    clock.now += 2.5  # 2.5 tokens saved up: two requests, then half a second to wait
    assert [limiter.check("a") for _ in range(2)] == [None, None]
    assert limiter.check("a") == pytest.approx(0.5)


def test_limiter_keeps_keys_apart_and_never_saves_beyond_the_burst() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(per_minute=6, burst=2, clock=clock)  # one every 10 s
    assert [limiter.check("a") for _ in range(2)] == [None, None]
    assert limiter.check("a") == pytest.approx(10.0)
    assert limiter.check("b") is None
    clock.now += 3600
    assert [limiter.check("a") for _ in range(2)] == [None, None]
    assert limiter.check("a") == pytest.approx(10.0)


def test_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(per_minute=60, burst=5, clock=clock, max_keys=3)
    for key in "abcd":
        limiter.check(key)
    assert len(limiter) == 3  # "a", least recently seen, made room
    clock.now += 4.9
    limiter.check("d")
    assert len(limiter) == 3  # not yet refilled: kept
    clock.now += 0.2
    limiter.check("d")
    assert len(limiter) == 1  # "b" and "c" refilled completely: the same as no bucket


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_s(w) for w in (0.0001, 0.5, 1.0, 1.01, 59.9)] == [1, 1, 1, 2, 60]


def test_limiter_keys_are_hashes_not_tokens() -> None:
    key = token_key("eyJhbGciOiJIUzI1NiJ9.secret-part")
    assert "secret" not in key and len(key) == 32
    assert key == token_key("eyJhbGciOiJIUzI1NiJ9.secret-part") != token_key("other")


def test_limiter_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        KeyedRateLimiter(per_minute=0, burst=1)


def test_rate_limit_settings_have_defaults_and_bounds() -> None:
    settings = load_settings({})
    assert (settings.rate_limit_per_min, settings.rate_limit_burst) == (600, 60)
    tuned = load_settings({"CODEFLOW_RATE_LIMIT_PER_MIN": "1.5", "CODEFLOW_RATE_LIMIT_BURST": "2"})
    assert (tuned.rate_limit_per_min, tuned.rate_limit_burst) == (1.5, 2)
    for name, value in (("CODEFLOW_RATE_LIMIT_BURST", "0"), ("CODEFLOW_RATE_LIMIT_PER_MIN", "0")):
        with pytest.raises(SettingsError, match=name):
            load_settings({name: value})

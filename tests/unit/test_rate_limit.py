"""RateLimiter on a fake clock: pacing, token debt, server headers, Retry-After."""

from __future__ import annotations

import itertools

import pytest

from tasks.embedding.rate_limit import RateLimiter, parse_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, **options: float) -> RateLimiter:
    settings = {"rpm": 600.0, "tpm": 1_000_000.0, **options}
    return RateLimiter(clock=clock, sleep=clock.sleep, **settings)


def admitted_times(rl: RateLimiter, clock: FakeClock, n: int, tokens: int = 1) -> list[float]:
    times = []
    for _ in range(n):
        rl.acquire(tokens)
        times.append(clock.now)
    return times


def count_in_window(times: list[float], start: float, width: float) -> int:
    return sum(start <= t < start + width for t in times)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20ms", 0.02), ("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("2.5", 2.5), ("0", 0.0)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "1x"])
def test_unreadable_durations_are_none(text: str) -> None:
    assert parse_duration(text) is None


def test_requests_are_evenly_spaced_and_no_minute_holds_more_than_rpm() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=120)
    times = admitted_times(rl, clock, 300)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(0.5)
    assert max(count_in_window(times, t, 60.0) for t in times) <= 120


def test_burst_lets_a_few_go_at_once_then_paces() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=60, request_burst=4, token_burst=1000)
    times = admitted_times(rl, clock, 10)
    assert times[:5] == [0.0] * 5 and times[5] == pytest.approx(1.0)


def test_tokens_per_minute_allow_one_large_request_then_wait_for_the_debt() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=10_000, tpm=60_000)  # 1,000 tokens per second
    assert rl.acquire(30_000) == 0.0  # more than a second's share: it goes, in debt
    waited = rl.acquire(1_000)
    assert waited == pytest.approx(30.0)
    assert rl.stats.waits == 1 and rl.stats.waited_s == pytest.approx(30.0)


def test_stricter_server_limits_replace_configured_ones() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=6000, tpm=1_000_000)
    rl.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "2000000"})
    assert rl.requests.per_minute == 60 and rl.tokens.per_minute == 1_000_000
    times = admitted_times(rl, clock, 3)
    assert times[2] - times[1] == pytest.approx(1.0)


def test_exhausted_server_budget_holds_until_its_reset() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    rl.observe(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "5s",
            "x-ratelimit-remaining-tokens": "500",
            "x-ratelimit-reset-tokens": "2s",
        }
    )
    assert rl.acquire(100) == pytest.approx(5.0)
    clock.now = 10.0
    rl.observe({"x-ratelimit-remaining-tokens": "500", "x-ratelimit-reset-tokens": "3s"})
    assert rl.acquire(400) == 0.0  # fits in what the server said remains
    assert rl.acquire(400) == pytest.approx(3.0)  # 100 left: wait for the reset


def test_retry_after_holds_everyone() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    rl.penalize(2.5)
    assert rl.acquire(1) == pytest.approx(2.5)
    assert rl.stats.penalties == 1


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rpm=0, tpm=10)

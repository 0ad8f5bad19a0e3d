from __future__ import annotations

from pathlib import Path

import pytest

from config import SettingsError, load_settings


def test_seed_defaults() -> None:
    settings = load_settings({})
    assert settings.websocket_port == 3001
    assert settings.cache_ttl_days == 30
    assert settings.sandbox_timeout_ms == 30000
    assert settings.redis_url is None
    assert settings.home == Path("~/.codeflow").expanduser()


def test_seed_names_unprefixed_and_others_prefixed(tmp_path: Path) -> None:
    settings = load_settings(
        {"REDIS_URL": "redis://h:1/0", "WEBSOCKET_PORT": "4000", "CODEFLOW_HOME": str(tmp_path)}
    )
    assert (settings.redis_url, settings.websocket_port, settings.home) == (
        "redis://h:1/0",
        4000,
        tmp_path,
    )


def test_environment_is_read_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSOCKET_PORT", "4555")
    assert load_settings({}).websocket_port == 3001
    assert load_settings().websocket_port == 4555


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WEBSOCKET_PORT": "abc"}, "WEBSOCKET_PORT: expected an integer, got 'abc'"),
        ({"CACHE_TTL_DAYS": "-1"}, "CACHE_TTL_DAYS: expected a number greater than 0, got '-1'"),
        ({"CODEFLOW_EMBEDDER": "bert"}, "CODEFLOW_EMBEDDER: expected one of 'local' or 'openai'"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a URL starting with redis://"),
        ({"SANDBOX_TIMEOUT_MS": "5"}, "SANDBOX_TIMEOUT_MS: expected a number of at least 100"),
        (
            {"CODEFLOW_SEMANTIC_WEIGHT": "-0.5"},
            "CODEFLOW_SEMANTIC_WEIGHT: expected a number of at least 0",
        ),
    ],
)
def test_bad_values_give_one_line_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_sandbox_pool_is_off_unless_sized() -> None:
    assert load_settings({}).sandbox_pool_size == 0
    assert load_settings({"CODEFLOW_SANDBOX_POOL_SIZE": "4"}).sandbox_pool_size == 4
    with pytest.raises(SettingsError, match="CODEFLOW_SANDBOX_POOL_SIZE: expected a number of"):
        load_settings({"CODEFLOW_SANDBOX_POOL_SIZE": "17"})


def test_secrets_are_hidden() -> None:
    settings = load_settings({"OPENAI_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(settings)
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-very-secret"


def test_semantic_weight_defaults_to_the_embedders_own() -> None:
    assert load_settings({}).semantic_weight is None
    assert load_settings({"CODEFLOW_SEMANTIC_WEIGHT": "0.5"}).semantic_weight == 0.5


def test_the_process_environment_is_read_again_when_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEFLOW_EMBED_CONCURRENCY", "3")
    first = load_settings()
    assert load_settings() is first  # remembered while the environment stays the same
    monkeypatch.setenv("CODEFLOW_EMBED_CONCURRENCY", "5")
    assert load_settings().embed_concurrency == 5
    monkeypatch.setenv("CODEFLOW_EMBED_CONCURRENCY", "zero")
    with pytest.raises(SettingsError, match="CODEFLOW_EMBED_CONCURRENCY"):
        load_settings()

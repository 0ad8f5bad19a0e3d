"""config.environment: what the thin client reads without the settings model."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, load_settings
from config.environment import CLIENT_ONLY, PREFIX, SEED_VARIABLES, home, settings_digest


def test_the_seed_variables_are_every_unprefixed_variable_settings_read() -> None:
    aliases = {
        str(field.validation_alias)
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, str)
    }
    assert aliases == SEED_VARIABLES
    assert all(name.startswith(PREFIX) for name in CLIENT_ONLY)


def test_home_is_resolved_as_settings_resolve_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "~/elsewhere", "relative/home"):
        environ = {"CODEFLOW_HOME": value} if value else {}
        monkeypatch.delenv("CODEFLOW_HOME", raising=False)
        assert home(environ) == load_settings(environ).home


def test_the_digest_follows_settings_and_secrets_but_not_client_only_variables() -> None:
    base = {"CODEFLOW_HOME": "/h", "REDIS_URL": "redis://a", "PATH": "/bin", "HOME": "/root"}
    digest = settings_digest(base)
    assert settings_digest({**base, "PATH": "/usr/bin", "TERM": "xterm"}) == digest
    assert settings_digest({**base, "CODEFLOW_SERVICE_IDLE_S": "5"}) == digest
    assert settings_digest({**base, "CODEFLOW_SANDBOX_POOL_SIZE": "4"}) == digest
    changes = [
        {"REDIS_URL": "redis://b"},
        {"OPENAI_API_KEY": "sk-1"},
        {"CODEFLOW_SEMANTIC_WEIGHT": "3"},
        {"PREFECT_API_URL": "http://p/api"},
    ]
    for changed in changes:
        assert settings_digest({**base, **changed}) != digest, changed
    assert Path(home(base)) == Path("/h")

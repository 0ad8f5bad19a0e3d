"""Settings travel pickled to Dask workers: their reprs never show a secret, their pickles
keep every value."""

from __future__ import annotations

import pickle

from config import load_settings

SECRETS = {"REDIS_URL": "redis://app:hunter2@redis.internal:6380/0", "OPENAI_API_KEY": "sk-x1"}


def test_repr_and_str_hide_the_redis_password_and_keys() -> None:
    settings = load_settings(SECRETS)
    for shown in (repr(settings), str(settings)):
        assert "hunter2" not in shown and "sk-x1" not in shown
        assert "redis://app:**********@redis.internal:6380/0" in shown


def test_a_pickled_copy_keeps_the_secrets() -> None:
    settings = pickle.loads(pickle.dumps(load_settings(SECRETS)))
    assert settings.redis_url == SECRETS["REDIS_URL"]
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-x1"


def test_a_url_without_a_password_is_shown_as_given() -> None:
    settings = load_settings({"REDIS_URL": "unix:///tmp/r.sock?db=0"})
    assert "unix:///tmp/r.sock?db=0" in repr(settings)

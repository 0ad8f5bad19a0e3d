"""When codeflow starts Prefect's temporary API server itself: only when Prefect would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from config.prefect_env import uses_ephemeral_api


def test_no_url_anywhere_means_the_temporary_server(tmp_path: Path) -> None:
    assert uses_ephemeral_api({"PREFECT_HOME": str(tmp_path)})


def test_an_api_url_in_the_environment_wins(tmp_path: Path) -> None:
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://prefect:4200/api"}
    assert not uses_ephemeral_api(env)


def test_ephemeral_mode_turned_off(tmp_path: Path) -> None:
    for name in ("PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"):
        assert not uses_ephemeral_api({"PREFECT_HOME": str(tmp_path), name: "False"})


def test_the_active_profile_is_read(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(
        'active = "team"\n'
        '[profiles.team]\nPREFECT_API_URL = "http://prefect:4200/api"\n'
        '[profiles.local]\nPREFECT_LOGGING_LEVEL = "DEBUG"\n'
    )
    env = {"PREFECT_HOME": str(tmp_path)}
    assert not uses_ephemeral_api(env)
    assert uses_ephemeral_api({**env, "PREFECT_PROFILE": "local"})


def test_an_unreadable_profile_file_falls_back_to_prefects_default(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text("not [ toml")
    assert uses_ephemeral_api({"PREFECT_HOME": str(tmp_path)})


def test_flows_on_a_temporary_server_run_without_heartbeats() -> None:
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    from flows.cli.prefect_api import PrefectApi

    def frequency() -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    process = subprocess.Popen([sys.executable, "-c", ""])  # stands in for the server
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 90}):
            with PrefectApi().flow_runs():  # another server: its settings stand
                assert frequency() == 90
            with PrefectApi("http://127.0.0.1:9/api", process).flow_runs():
                assert frequency() is None
            assert frequency() == 90
    finally:
        process.wait()

"""``codeflow report``: run history and index statistics as a table, CSV, JSON, Parquet or a
self-contained HTML page with charts."""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from config.errors import ConfigError, RepositoryError

if TYPE_CHECKING:
    from config import Settings
    from tasks.reports.frames import Report

FORMATS = ("table", "csv", "json", "parquet", "html")  # tasks.reports.render.FORMATS

DEFAULT_SINCE = "7d"
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")
_REPO_ID = re.compile(r"[0-9a-f]{16}")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser("report", help="run history and index statistics")
    report.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help="a duration back from now (30m, 12h, 7d, 2w) or a date (2026-12-01) "
        f"(default {DEFAULT_SINCE})",
    )
    report.add_argument("--repo", help="only this repository: a path, a registered name or an ID")
    report.add_argument("--format", choices=FORMATS, default="table", help="default table")
    report.add_argument("--output", type=Path, help="write to this file (Parquet needs one)")
    report.set_defaults(handler=run_report)


def parse_since(value: str, now: float) -> float:
    """Seconds since the epoch for ``--since``: a duration back from ``now`` or a date
    (UTC, ISO 8601)."""
    found = _DURATION.fullmatch(value.strip().lower())
    if found:
        return now - float(found.group(1)) * _UNITS[found.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--since {value!r}: use a duration such as 30m, 12h, 7d or 2w, or a date such as "
            "2026-12-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    if moment.timestamp() > now:
        raise ConfigError(f"--since {value!r} is in the future")
    return moment.timestamp()


def repo_id_for(key: str, settings: Settings) -> str:
    """The repository ID ``--repo`` names: an ID, a registered name, or a git folder."""
    if _REPO_ID.fullmatch(key):
        return key
    from tasks.repo.git_repository import GitRepository
    from tasks.repo.registry import Checkouts, registry_for

    folder = Path(key)
    for entry in registry_for(settings).find(key):
        folder = Checkouts(settings.home).work_tree(entry)
    try:
        with GitRepository.open(str(folder)) as repo:
            return repo.repo_id
    except RepositoryError as exc:
        raise ConfigError(f"--repo {key!r}: not a repository ID, registered name or {exc}") from exc


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    if args.format == "parquet" and args.output is None:
        raise ConfigError("--format parquet writes a binary file: give it --output FILE")
    if args.output is not None and not args.output.parent.is_dir():
        raise ConfigError(f"--output {args.output}: folder {args.output.parent} does not exist")
    now = time.time()
    since = parse_since(args.since, now)
    repo_id = repo_id_for(args.repo, settings) if args.repo else None
    from flows.cli.report_inputs import gather

    report = gather(settings, since, now, repo_id)
    _write(report, args.format, args.output)
    return 0


def _write(report: Report, form: str, output: Path | None) -> None:
    from tasks.reports import render

    if form == "parquet":
        assert output is not None
        render.write_parquet(report, output)
        return
    writers = {
        "table": render.render_table,
        "csv": render.render_csv,
        "json": render.render_json,
        "html": render.render_html,
    }
    text = writers[form](report)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")

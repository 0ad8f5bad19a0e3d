"""``codeflow repo add|list|remove|sync``: the repositories the scheduled sync keeps fresh.

``add`` only records the repository (a URL is cloned by the first sync, on the machine that
runs it); ``sync`` runs the ``sync_repositories`` flow here and now (the ``sync`` deployment
runs the same flow on a worker, on its cron). The ``tasks.repo`` modules (gitpython) are
imported inside the handlers: ``build_parser()`` stays light.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import Settings
    from tasks.repo.registry import RegisteredRepo


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    repo = commands.add_parser("repo", help="repositories kept fresh by the scheduled sync")
    actions = repo.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register a folder or a git URL")
    add.add_argument("source", metavar="PATH|URL")
    add.add_argument("--branch", help="branch to index (URL: default branch of the remote)")
    add.add_argument("--schedule", metavar="CRON", help="sync at most this often, e.g. '0 * * * *'")
    add.add_argument("--name", help="name to register it under (default: from the path or URL)")
    add.set_defaults(handler=run_add)
    listing = actions.add_parser("list", help="show registered repositories")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=run_list)
    remove = actions.add_parser("remove", help="unregister (and delete codeflow's clone)")
    remove.add_argument("key", metavar="NAME|PATH|URL")
    remove.add_argument("--keep-clone", action="store_true", help="keep CODEFLOW_HOME/repos/NAME")
    remove.set_defaults(handler=run_remove)
    sync = actions.add_parser("sync", help="fetch and index registered repositories now")
    sync.add_argument("names", nargs="*", metavar="NAME", help="only these (default: all due)")
    sync.add_argument("--force", action="store_true", help="ignore per-repository schedules")
    sync.add_argument("--json", action="store_true", help="print the outcome as JSON")
    sync.set_defaults(handler=run_sync)


def run_add(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.repo.git_repository import GitRepository
    from tasks.repo.registry import registry_for
    from tasks.repo.source_params import Source, check_branch, check_cron, parse_source

    source = parse_source(args.source)
    if not source.is_url:
        with GitRepository.open(source.value) as repo:  # a clear error for a non-repository
            source = Source("path", str(repo.root))
    entry = registry_for(settings).add(
        source,
        branch=check_branch(args.branch),
        schedule=check_cron(args.schedule),
        name=args.name,
    )
    when = f"on '{entry.schedule}'" if entry.schedule else "on every sync run"
    print(f"registered {entry.name}: {entry.source} ({entry.branch or 'default branch'}), {when}")
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.repo.registry import registry_for

    entries = registry_for(settings).entries()
    now = time.time()
    if args.json:
        print(json.dumps([_describe(settings, e, now) for e in entries]))
        return 0
    if not entries:
        print("no repositories registered; add one with: codeflow repo add PATH|URL")
        return 0
    for e in entries:
        synced = _when(e.last_synced) if e.last_synced else "never synced"
        commit = (e.last_commit or "")[:12] or "-"
        print(
            f"{e.name}  {e.branch or '(default)'}  {e.schedule or '(every sync)'}  "
            f"{synced}  {commit}  {e.source}"
        )
        if e.last_error:
            print(f"    last error: {e.last_error}")
    return 0


def _describe(settings: Settings, entry: RegisteredRepo, now: float) -> dict[str, Any]:
    from tasks.repo.registry import Checkouts, is_due

    described = asdict(entry)
    described.pop("extra", None)
    described["path"] = str(Checkouts(settings.home).work_tree(entry))
    described["due"] = is_due(entry, now)
    return described


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("synced %Y-%m-%d %H:%M UTC")


def run_remove(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.repo.registry import Checkouts, registry_for

    for entry in registry_for(settings).remove(args.key):
        deleted = (
            entry.kind == "url"
            and not args.keep_clone
            and Checkouts(settings.home).remove(entry.source, entry.name)
        )
        print(f"removed {entry.name} ({entry.source})" + (", clone deleted" if deleted else ""))
    return 0


def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.repo.registry import registry_for
    from tasks.repo.source_params import check_names

    known = [e.name for e in registry_for(settings).entries()]
    check_names(args.names, known)  # a clear error before Prefect starts
    from flows.cli.prefect_api import start_prefect_api

    api = start_prefect_api(settings)
    from flows.sync import sync_repositories

    api.ready()
    with api.flow_runs():
        outcome = sync_repositories(names=args.names or None, force=args.force)
    _print_outcome(outcome, as_json=args.json)
    return 0


def _print_outcome(outcome: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome))
        return
    for name, result in outcome["synced"].items():
        print(f"{name}: {(result.get('commit') or '')[:12]} ({result['files_changed']} changed)")
    if outcome["not_due"]:
        print(f"not due: {', '.join(outcome['not_due'])}")

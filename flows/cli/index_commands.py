"""``codeflow index``, ``codeflow search``, ``codeflow related`` and ``codeflow status``.

``search``, ``related`` and ``status`` never start a flow: they read the manifest and the store (see
:mod:`tasks.search.repository_search`, which the server's ``/api/search`` shares).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from config import Settings, with_backends
from config.errors import ConfigError
from flows.cli.progress import ProgressView
from tasks.repo.git_repository import GitRepository
from tasks.services import services_for


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    index = commands.add_parser("index", help="index a git repository (incremental)")
    index.add_argument("path", help="a git work tree (or a folder inside one)")
    index.add_argument("--branch", help="fail unless this branch is checked out")
    index.add_argument("--full", action="store_true", help="ignore the manifest: full scan")
    index.add_argument("--json", action="store_true", help="print the run summary as JSON")
    _backend_options(index)
    index.set_defaults(handler=run_index)
    search = commands.add_parser("search", help="hybrid code search over an indexed repository")
    search.add_argument("query")
    search.add_argument("--repo", required=True, help="path of the indexed repository")
    search.add_argument("--limit", type=int, default=10, help="results (default 10)")
    search.add_argument("--json", action="store_true", help="print a JSON array")
    _backend_options(search)
    search.set_defaults(handler=run_search)
    related = commands.add_parser("related", help="the code most related to a place in a file")
    related.add_argument("place", metavar="FILE:LINE", help="a file of the repository and a line")
    related.add_argument("--repo", help="the indexed repository (default: the one holding FILE)")
    related.add_argument("--limit", type=int, default=10, help="results (default 10)")
    related.add_argument("--json", action="store_true", help="print a JSON array")
    _backend_options(related)
    related.set_defaults(handler=run_related)
    status = commands.add_parser("status", help="what is indexed for a repository")
    status.add_argument("path")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    _backend_options(status)
    status.set_defaults(handler=run_status)


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedder", choices=["local", "openai"], help="override CODEFLOW_EMBEDDER"
    )
    parser.add_argument("--store", choices=["lancedb", "pinecone"], help="override CODEFLOW_STORE")


def run_index(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_backends(settings, args.embedder, args.store)
    with GitRepository.open(args.path) as repo:  # clear errors before Prefect starts
        root, label = str(repo.root), repo.branch_label()
    if args.branch and args.branch != label:
        raise ConfigError(f"branch {args.branch!r} is not checked out at {root} (HEAD: {label})")
    from flows.cli.prefect_api import start_prefect_api
    from tasks.backends import check_backends

    api = start_prefect_api(settings)  # starts while the backends are checked
    check_backends(services_for(settings))  # keys, model, dimensions: one line before any work
    from flows.sync import vectorize_flow

    vectorize_repository = vectorize_flow(settings)  # threads, or Dask when configured

    trace_id = uuid.uuid4().hex
    view = ProgressView(
        services_for(settings).bus, trace_id, enabled=sys.stderr.isatty() or not args.json
    )
    watcher = threading.Thread(target=view.follow, daemon=True)
    watcher.start()
    try:
        api.ready()
        with api.flow_runs():
            summary = vectorize_repository(
                root,
                branch=args.branch,
                full=args.full,
                trace_id=trace_id,
                embedder=args.embedder,
                store=args.store,
            )
    finally:
        view.stop()
        watcher.join(timeout=2)
    _print_summary(summary, args.json)
    return 0


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    skips = ", ".join(f"{n} {reason}" for reason, n in sorted(summary["skipped"].items()))
    print(
        f"indexed {summary['files_total']} files, {summary['chunks_total']} chunks at "
        f"{(summary['commit'] or '')[:12]} ({summary['files_changed']} changed, "
        f"{summary['files_deleted']} deleted, {summary['chunks_embedded']} chunks embedded, "
        f"{summary['cache_hits']} from cache, {summary.get('chunks_unchanged', 0)} unchanged) "
        f"in {summary['duration_s']:.2f} s" + (f"; skipped {skips}" if skips else "")
    )


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.search.repository_search import search_repository

    settings = with_backends(settings, args.embedder, args.store)
    hits = search_repository(services_for(settings), args.repo, args.query, args.limit)
    _print_hits(hits, args.json)
    return 0


def run_related(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.search.related import related_code

    repo, path, line = _place(args.place, args.repo)
    settings = with_backends(settings, args.embedder, args.store)
    _print_hits(related_code(services_for(settings), repo, path, line, args.limit), args.json)
    return 0


def _place(place: str, repo: str | None) -> tuple[str, str, int]:
    """``FILE:LINE`` as (repository, repo-relative path, line). FILE is a path on disk
    (absolute, or relative to here) or, with ``--repo``, relative to the repository."""
    file, sep, line = place.rpartition(":")
    if not sep or not line.isdigit() or int(line) < 1:
        raise ConfigError(f"{place!r}: expected FILE:LINE, e.g. src/app.py:42")
    on_disk = Path(file).expanduser()
    if repo is not None and not on_disk.is_absolute() and not on_disk.exists():
        return repo, file, int(line)
    if not on_disk.exists():
        raise ConfigError(
            f"{file}: no such file; pass a path on disk, or --repo and a repo-relative path"
        )
    with GitRepository.open(repo or on_disk.parent) as opened:
        root = opened.root
    try:
        relative = on_disk.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(f"{file} is not inside the repository at {root}") from None
    return str(root), relative, int(line)


def _print_hits(hits: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(hits))
        return
    for hit in hits:
        symbol = f"  {hit['symbol']}" if hit.get("symbol") else ""
        print(f"{hit['path']}:{hit['start_line']}-{hit['end_line']}  {hit['score']:.3f}{symbol}")
        first = next((line for line in hit["text"].splitlines() if line.strip()), "")
        print(f"    {first.strip()[:100]}")


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_backends(settings, args.embedder, args.store)
    from tasks.search.repository_search import indexed_manifest

    manifest, namespace = indexed_manifest(services_for(settings), args.path)
    reasons: dict[str, int] = {}
    for reason in manifest.skipped.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    report = {
        "repo_id": manifest.repo_id,
        "branch": manifest.branch,
        "namespace": namespace,
        "commit": manifest.commit,
        "files_total": len(manifest.chunks),
        "chunks_total": manifest.chunks_total,
        "skipped": reasons,
        "updated_at": manifest.updated_at,
        "files": {p: manifest.files[p] for p in manifest.chunks if p in manifest.files},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.path}: branch {manifest.branch} at {(manifest.commit or '')[:12]}, "
            f"{report['files_total']} files, {report['chunks_total']} chunks, skipped {reasons}"
        )
    return 0

"""``codeflow index``, ``codeflow search``, ``codeflow related`` and ``codeflow status``.

``search``, ``related`` and ``status`` never start a flow: they read the manifest and the store (see
:mod:`tasks.search.repository_search`, which the server's ``/api/search`` shares). Each command
runs :mod:`flows.service.operations`, through the local service (``remote_*``, the default) or
in this process (``run_*``, with ``CODEFLOW_SERVICE=off``): both print the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any

from flows.cli.progress import ProgressView, follow
from flows.service.client import ServiceClient

if TYPE_CHECKING:
    from config import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    index = commands.add_parser("index", help="index a git repository (incremental)")
    index.add_argument("path", help="a git work tree (or a folder inside one)")
    index.add_argument("--branch", help="fail unless this branch is checked out")
    index.add_argument("--full", action="store_true", help="ignore the manifest: full scan")
    index.add_argument("--json", action="store_true", help="print the run summary as JSON")
    _backend_options(index)
    index.set_defaults(handler=run_index, remote=remote_index)
    search = commands.add_parser("search", help="hybrid code search over an indexed repository")
    search.add_argument("query")
    search.add_argument(
        "--repo", required=True, help="path, registered name or ID of the indexed repository"
    )
    search.add_argument("--branch", help="with a repository ID: which indexed branch")
    search.add_argument("--limit", type=int, default=10, help="results (default 10)")
    search.add_argument("--json", action="store_true", help="print a JSON array")
    _backend_options(search)
    search.set_defaults(handler=run_search, remote=remote_search)
    related = commands.add_parser("related", help="the code most related to a place in a file")
    related.add_argument("place", metavar="FILE:LINE", help="a file of the repository and a line")
    related.add_argument("--repo", help="the indexed repository (default: the one holding FILE)")
    related.add_argument("--branch", help="with a repository ID: which indexed branch")
    related.add_argument("--limit", type=int, default=10, help="results (default 10)")
    related.add_argument("--json", action="store_true", help="print a JSON array")
    _backend_options(related)
    related.set_defaults(handler=run_related, remote=remote_related)
    status = commands.add_parser("status", help="what is indexed for a repository")
    status.add_argument("path", help="path or ID of the repository")
    status.add_argument("--branch", help="with a repository ID: which indexed branch")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    _backend_options(status)
    status.set_defaults(handler=run_status, remote=remote_status)


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedder", choices=["local", "openai"], help="override CODEFLOW_EMBEDDER"
    )
    parser.add_argument("--store", choices=["lancedb", "pinecone"], help="override CODEFLOW_STORE")


def _backends(args: argparse.Namespace) -> dict[str, Any]:
    return {"embedder": args.embedder, "store": args.store}


def _index_request(args: argparse.Namespace) -> dict[str, Any]:
    return {"cwd": os.getcwd(), "path": args.path, "branch": args.branch, "full": args.full}


def run_index(args: argparse.Namespace, settings: Settings) -> int:
    from flows.cli.prefect_api import start_prefect_api
    from flows.service import operations

    root = operations.index_target(settings, cwd=os.getcwd(), path=args.path, branch=args.branch)
    api = start_prefect_api(settings)  # starts while the backends are checked
    operations.check_backends(settings, args.embedder, args.store)
    trace_id = uuid.uuid4().hex
    view = ProgressView(trace_id, enabled=sys.stderr.isatty() or not args.json)
    stop = threading.Event()
    watcher = threading.Thread(
        target=follow, args=(_bus(settings), trace_id, view.on_event, stop), daemon=True
    )
    watcher.start()
    try:
        api.ready()
        with api.flow_runs():
            summary = operations.index(
                settings, root=root, trace_id=trace_id, branch=args.branch, full=args.full,
                **_backends(args),
            )  # fmt: skip
    finally:
        stop.set()
        view.stop()
        watcher.join(timeout=2)
    _print_summary(summary, args.json)
    return 0


def _bus(settings: Settings) -> Any:
    from tasks.services import services_for

    return services_for(settings).bus


def remote_index(args: argparse.Namespace, remote: ServiceClient) -> int:
    trace_id = uuid.uuid4().hex
    view = ProgressView(trace_id, enabled=sys.stderr.isatty() or not args.json)
    body = {**_index_request(args), **_backends(args), "trace_id": trace_id}
    try:
        summary, status = remote.call("index", body, on_event=view.on_event)
    finally:
        view.stop()
    _print_summary(summary, args.json)
    return status


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


def _search_request(args: argparse.Namespace) -> dict[str, Any]:
    body = {"cwd": os.getcwd(), "query": args.query, "repo": args.repo, "limit": args.limit}
    return {**body, **_branch(args), **_backends(args)}


def _branch(args: argparse.Namespace) -> dict[str, str]:
    """``--branch`` when given (the service's operations take it only then)."""
    return {"branch": args.branch} if args.branch else {}


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    from flows.service import operations

    _print_hits(operations.search(settings, **_search_request(args)), args.json)
    return 0


def remote_search(args: argparse.Namespace, remote: ServiceClient) -> int:
    hits, status = remote.call("search", _search_request(args))
    _print_hits(hits, args.json)
    return status


def _related_request(args: argparse.Namespace) -> dict[str, Any]:
    body = {"cwd": os.getcwd(), "place": args.place, "repo": args.repo, "limit": args.limit}
    return {**body, **_branch(args), **_backends(args)}


def run_related(args: argparse.Namespace, settings: Settings) -> int:
    from flows.service import operations

    _print_hits(operations.related(settings, **_related_request(args)), args.json)
    return 0


def remote_related(args: argparse.Namespace, remote: ServiceClient) -> int:
    hits, status = remote.call("related", _related_request(args))
    _print_hits(hits, args.json)
    return status


def _print_hits(hits: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(hits))
        return
    for hit in hits:
        symbol = f"  {hit['symbol']}" if hit.get("symbol") else ""
        print(f"{hit['path']}:{hit['start_line']}-{hit['end_line']}  {hit['score']:.3f}{symbol}")
        first = next((line for line in hit["text"].splitlines() if line.strip()), "")
        print(f"    {first.strip()[:100]}")


def _status_request(args: argparse.Namespace) -> dict[str, Any]:
    return {"cwd": os.getcwd(), "path": args.path, **_branch(args), **_backends(args)}


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from flows.service import operations

    _print_status(args, operations.status(settings, **_status_request(args)))
    return 0


def remote_status(args: argparse.Namespace, remote: ServiceClient) -> int:
    report, status = remote.call("status", _status_request(args))
    _print_status(args, report)
    return status


def _print_status(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.path}: branch {report['branch']} at {(report['commit'] or '')[:12]}, "
        f"{report['files_total']} files, {report['chunks_total']} chunks, "
        f"skipped {report['skipped']}"
    )

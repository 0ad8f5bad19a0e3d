"""``codeflow service start|stop|status`` (the on-demand local service) and ``codeflow mcp``
(the MCP server for agents, over stdio)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from config.errors import ServiceError
from config.paths import process_alive
from flows.service.client import ServiceClient, connect
from flows.service.paths import ServicePaths

if TYPE_CHECKING:
    from config import Settings

STOP_WAIT_S = 30.0
START_WAIT_S = 180.0
EXIT_NOT_RUNNING = 3  # as ``systemctl status`` says of a stopped unit


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = commands.add_parser("service", help="the local service that keeps state warm")
    sub = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    for name, handler, text in (
        ("start", run_start, "start the service and wait until it is ready"),
        ("stop", run_stop, "stop the service (running requests get a few seconds)"),
        ("status", run_status, "is it running; its URLs (Prefect UI, HTTP API, MCP)"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("--json", action="store_true", help="print one JSON object")
        action.set_defaults(handler=handler)
    mcp = commands.add_parser("mcp", help="MCP server for agents, over stdio")
    mcp.set_defaults(handler=run_mcp)


def run_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start the service (if none runs) and return once it can run flows."""
    client, hello = connect(ServicePaths.under(settings.home))
    deadline = time.monotonic() + START_WAIT_S
    while not hello.get("ready"):
        if hello.get("error"):
            raise ServiceError(str(hello["error"]))
        if time.monotonic() > deadline:
            raise ServiceError(f"the codeflow service was not ready in {START_WAIT_S:.0f} s")
        time.sleep(0.1)  # the service's Prefect API boots in another process
        latest = client.hello()
        if latest is None:
            raise ServiceError(
                f"the codeflow service stopped while starting; see {client.paths.log}"
            )
        hello = latest
    _show(hello, args.json)
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    hello = ServiceClient(ServicePaths.under(settings.home)).hello()
    if hello is None:
        print(json.dumps({"running": False}) if args.json else "codeflow service: not running")
        return EXIT_NOT_RUNNING
    _show(hello, args.json)
    return 0


def _show(hello: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"running": True, **hello}))
        return
    uptime = time.time() - float(hello.get("started_at", time.time()))
    served, active = hello.get("served", 0), hello.get("active", 0)
    print(f"codeflow service: running (pid {hello['pid']}, up {uptime:.0f} s, "
          f"{served} requests served, {active} running)")  # fmt: skip
    for label, key in (("Prefect UI", "prefect_ui_url"), ("HTTP API", "http_url"),
                       ("MCP", "mcp_url")):  # fmt: skip
        if hello.get(key):
            print(f"  {label + ':':12} {hello[key]}")


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    paths = ServicePaths.under(settings.home)
    hello = ServiceClient(paths).hello()
    pid = int((hello or paths.read_state() or {}).get("pid", 0))
    if not pid or not process_alive(pid):
        print("codeflow service: not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while process_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)  # waiting for another process to exit: nothing to wait on
    print(f"codeflow service: stopped (pid {pid})")
    return 0


def run_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from flows.cli.remote import remote_for
    from flows.service.mcp_tools import serve_stdio

    client = remote_for()
    if client is None:
        raise ServiceError("codeflow mcp needs the local service: stop the running one first")
    serve_stdio(client)
    return 0

"""Events as plain data: what an event is, and which rooms it belongs to (no I/O).

An event is a flat JSON object with at least ``kind`` and ``ts`` (seconds since the epoch):

>>> event = make_event("progress", flow_run_id="r1", flow_name="vectorize", done=3, total=9,
...                    unit="files")
>>> sorted(event)
['done', 'flow_name', 'flow_run_id', 'kind', 'total', 'ts', 'unit']
>>> rooms_for(event)
['run:r1']
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.index.manifests import repo_of_tag

KINDS = frozenset(
    {
        "flow_run.state",
        "task_run.state",
        "progress",
        "sandbox.result",
        "cache.invalidated",
        "index.summary",
    }
)
STATES = frozenset(
    {
        "Scheduled",
        "Pending",
        "Running",
        "Retrying",
        "Cached",
        "Completed",
        "Failed",
        "Crashed",
        "Cancelled",
        "Cancelling",
        "Paused",
        "AwaitingRetry",
        "Late",
    }
)
_SECRET_NAME = re.compile(r"secret|password|passwd|api_?key|authorization|credential|(^|_)token$")

Event = dict[str, Any]


def make_event(kind: str, **fields: Any) -> Event:
    """Build an event: known kind, ``ts`` stamped, ``None`` fields dropped, no secret fields."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(KINDS)}")
    state = fields.get("state")
    if state is not None and state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    for name in fields:
        if _SECRET_NAME.search(name.lower()):
            raise ValueError(f"event field {name!r} looks like a secret; events are public")
    event: Event = {"kind": kind, "ts": fields.pop("ts", None) or time.time()}
    event.update((k, v) for k, v in fields.items() if v is not None)
    return event


def invalidation_event(
    namespace: str,
    strategy: str,
    targets: Sequence[str],
    count: int,
    *,
    invalidated: Sequence[str] = (),
    **fields: Any,
) -> Event:
    """A ``cache.invalidated`` event: what was invalidated (``strategy`` over ``targets`` in
    the cache ``namespace``), how many values, and the repository when everything
    ``invalidated`` (default: the targets) is one repository's search answers."""
    repos = {repo_of_tag(name) for name in invalidated or targets}
    if "repo_id" not in fields and len(repos) == 1:
        fields["repo_id"] = repos.pop()
    return make_event(
        "cache.invalidated",
        namespace=namespace,
        strategy=strategy,
        targets=list(targets),
        count=count,
        **fields,
    )


def rooms_for(event: Mapping[str, Any]) -> list[str]:
    """The rooms an event belongs to: ``runs`` (flow-run states), ``cache`` (every cache
    invalidation), ``run:<id>``, ``repo:<id>``."""
    rooms = []
    if event.get("kind") == "flow_run.state":
        rooms.append("runs")
    elif event.get("kind") == "cache.invalidated":
        rooms.append("cache")
    if event.get("flow_run_id"):
        rooms.append(f"run:{event['flow_run_id']}")
    if event.get("repo_id"):
        rooms.append(f"repo:{event['repo_id']}")
    return rooms

"""``codeflow cache stats|invalidate``.

Redis and the cache modules are imported inside the handlers: ``build_parser()`` stays light.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import Settings
    from tasks.cache.invalidation import Invalidator
    from tasks.redis_io.connections import SyncClient


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = commands.add_parser("cache", help="inspect and invalidate the Redis cache")
    sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    stats = sub.add_parser("stats", help="hit/miss counters per namespace")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=show_stats)
    inv = sub.add_parser("invalidate", help="invalidate cached values")
    target = inv.add_mutually_exclusive_group(required=True)
    target.add_argument("--tag", help="every value written with this tag")
    target.add_argument("--depends-on", metavar="KEY", help="KEY and everything depending on it")
    target.add_argument("--event", help="what the named event's rule maps to")
    target.add_argument("--pattern", help="value keys matching this glob (SCAN+UNLINK)")
    target.add_argument("--key", help="exactly this key")
    inv.add_argument("--namespace", help="one namespace (default: every namespace)")
    inv.add_argument("--json", action="store_true", help="print one JSON object")
    inv.set_defaults(handler=invalidate)


def redis_client(settings: Settings) -> SyncClient:
    """A client for commands that read or change Redis directly (timeouts of 2 s at least)."""
    from tasks.redis_io.connections import connect, redis_url_for

    return connect(redis_url_for(settings), timeout_s=max(settings.redis_timeout_s, 2.0))


def collect_stats(client: SyncClient) -> dict[str, Any]:
    from tasks.redis_io.connections import read_cache_stats, server_size

    return {"namespaces": read_cache_stats(client), "redis": server_size(client)}


def show_stats(args: argparse.Namespace, settings: Settings) -> int:
    report = collect_stats(redis_client(settings))
    if args.json:
        print(json.dumps(report, indent=None))
        return 0
    if not report["namespaces"]:
        print("no cache namespaces yet")
    else:
        import pandas as pd

        table = pd.DataFrame.from_dict(report["namespaces"], orient="index")
        counts = ["hits", "misses", "sets", "invalidations"]
        table = table.reindex(columns=[*counts, "hit_rate"]).fillna(0)
        table[counts] = table[counts].astype(int)
        print(table.to_string())
    print(f"redis: {report['redis']['keys']} keys, {report['redis']['used_memory']:,} bytes")
    return 0


def invalidate(args: argparse.Namespace, settings: Settings) -> int:
    _validate(args)
    counts = _invalidate_each(args, settings)
    if args.json:
        print(json.dumps({"namespaces": counts}))
    else:
        for ns, count in counts.items():
            print(f"{ns}: {count} invalidated")
    return 0


def _invalidate_each(args: argparse.Namespace, settings: Settings) -> dict[str, int]:
    """How many values were invalidated in each namespace ``--namespace`` selects."""
    from tasks.cache.invalidation import Invalidator
    from tasks.cache.redis_cache import RedisCache
    from tasks.events.bus import EventBus
    from tasks.redis_io.connections import cache_namespaces

    client = redis_client(settings)
    bus = EventBus(client, maxlen=settings.events_maxlen)
    targets = [args.namespace] if args.namespace else cache_namespaces(client)
    counts: dict[str, int] = {}
    for ns in targets:
        cache = RedisCache(client, ns, ttl_s=settings.cache_ttl_seconds)
        counts[ns] = _apply(Invalidator(cache, announce=bus.publish), args)
    return counts


def _validate(args: argparse.Namespace) -> None:
    from tasks.redis_io.formats import validate_namespace, validate_part, validate_pattern

    if args.namespace:
        validate_namespace(args.namespace)
    if args.pattern:
        validate_pattern(args.pattern)
    else:
        what = "tag" if args.tag else "event" if args.event else "key"
        validate_part(args.tag or args.depends_on or args.event or args.key, what)


def _apply(inv: Invalidator, args: argparse.Namespace) -> int:
    if args.tag:
        return inv.by_tag(args.tag)
    if args.depends_on:
        return inv.by_dependency(args.depends_on)
    if args.event:
        return inv.by_event(args.event) if inv.event_rule(args.event) else 0
    if args.pattern:
        return inv.by_pattern(args.pattern)
    return inv.by_key(args.key)

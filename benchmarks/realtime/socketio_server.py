"""The peer: python-socketio (AsyncServer + AsyncRedisManager) served by aiohttp.

Clients emit ``subscribe`` with a room name and get ``subscribed`` back; the benchmark's
publisher emits ``event`` to a room through a write-only AsyncRedisManager, so every event
crosses Redis pub/sub exactly as ours crosses the Redis stream.
"""

from __future__ import annotations

import argparse
import resource

import socketio  # type: ignore[import-untyped]
from aiohttp import web


def build(redis_url: str) -> web.Application:
    manager = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=manager, cors_allowed_origins="*"
    )

    @sio.event  # type: ignore[untyped-decorator]
    async def subscribe(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)
        await sio.emit("subscribed", room, to=sid)

    app = web.Application()
    sio.attach(app)
    return app


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print(f"socketio server: http://127.0.0.1:{args.port}/", flush=True)
    web.run_app(build(args.redis_url), host="127.0.0.1", port=args.port, print=None, backlog=2048)

"""The Redis boundary: everything codeflow knows about Redis, in one place.

- :mod:`~tasks.redis_io.formats` (pure): cache keys and values, statistics hashes, event
  stream entries;
- :mod:`~tasks.redis_io.outage`: the one list of outage exceptions and what they become;
- :mod:`~tasks.redis_io.connections`: synchronous clients (``REDIS_URL`` or embedded);
- :mod:`~tasks.redis_io.aio`: the asyncio sibling, for the realtime server;
- :mod:`~tasks.redis_io.embedded`: the embedded ``redis-server`` started on demand.

Outside this package nothing catches a Redis exception: callers get
:class:`~config.errors.RedisUnavailable`, or a cache that passes through.
"""

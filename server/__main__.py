"""``python -m server [--port N] [--host H]``: the realtime server without the CLI (tests and
benchmarks start it this way; people use ``codeflow serve``)."""

from __future__ import annotations

import argparse
import logging

from config import load_settings
from config.native import quiet_blas_threads
from server.main import serve
from tasks.redis_io.formats import STREAM


def main(argv: list[str] | None = None) -> None:
    quiet_blas_threads()  # before numpy loads (searches import it lazily)
    parser = argparse.ArgumentParser(prog="python -m server")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--host", default=None)
    parser.add_argument("--stream", default=STREAM, help="event stream key (tests)")
    args = parser.parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    serve(settings, port=args.port, host=args.host, stream=args.stream)


if __name__ == "__main__":
    main()

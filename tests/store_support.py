"""Chunks and helpers the store and backend tests share."""

from __future__ import annotations

from tasks.embedders import Embedder
from tasks.records import Chunk
from tasks.search import VectorStore

NS = "github.com/acme/app@main"


def snippets() -> list[Chunk]:
    """Four small functions with distinct names, paths and vocabulary."""
    sources = {
        "app/config.py": (
            "load_config",
            "def load_config(path):\n    return json.load(open(path))",
        ),
        "app/server.py": ("HTTPServer", "class HTTPServer:\n    def serve_forever(self): ..."),
        "app/maths.py": ("fibonacci", "def fibonacci(n):\n    a, b = 0, 1\n    return a"),
        "app/text.py": ("slugify", "def slugify(title):\n    return re.sub('[^a-z]+', '-', title)"),
    }
    return [
        Chunk(path, "python", 1, 3, text, symbol, "function")
        for path, (symbol, text) in sources.items()
    ]


def synthetic(n: int) -> list[Chunk]:
    return [
        Chunk(f"gen/m{i // 50}.py", "python", i, i + 1, f"def handler_{i}(event):\n    return {i}")
        for i in range(n)
    ]


def put(store: VectorStore, embedder: Embedder, chunks: list[Chunk], ns: str = NS) -> None:
    store.upsert(ns, chunks, embedder.embed([c.text for c in chunks]))

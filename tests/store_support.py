"""Chunks and helpers the store and backend tests share."""

from __future__ import annotations

from tasks.embedding import Embedder
from tasks.records import Chunk
from tasks.vectors import VectorStore

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


#: A small shop's code by (path, symbol): the hybrid-search tests' corpus.
SHOP: dict[tuple[str, str | None], str] = {
    ("shop/config.py", "load_settings"): '''
        def load_settings(path: str) -> dict:
            """Read the YAML configuration file and return it as a dictionary."""
            with open(path) as handle:
                return yaml.safe_load(handle)
    ''',
    ("shop/cart.py", "Cart.total_price"): """
        class Cart:
            def total_price(self) -> Decimal:
                return sum(item.price * item.quantity for item in self.items)
    """,
    ("shop/http.py", "HTTPClient.get_json"): """
        class HTTPClient:
            def get_json(self, url: str) -> dict:
                response = self.session.get(url, timeout=self.timeout)
                response.raise_for_status()
                return response.json()
    """,
    ("shop/auth.py", "hash_password"): """
        def hash_password(password: str, salt: bytes) -> bytes:
            return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)
    """,
    ("shop/dates.py", "parse_iso_date"): """
        def parse_iso_date(value: str) -> datetime.date:
            return datetime.date.fromisoformat(value)
    """,
    ("shop/__init__.py", None): """
        from shop.cart import Cart
        from shop.config import load_settings
    """,
    ("tests/test_cart.py", "test_total_price"): """
        def test_total_price():
            cart = Cart(items=[Item(price=2, quantity=3)])
            assert cart.total_price() == 6
    """,
    ("shop/retry.py", "retry_with_backoff"): """
        def retry_with_backoff(call, attempts=5, base_delay=0.1):
            for attempt in range(attempts):
                try:
                    return call()
                except ConnectionError:
                    time.sleep(base_delay * 2 ** attempt)
            raise RuntimeError("gave up")
    """,
}

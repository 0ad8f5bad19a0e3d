"""`related`: the code most related to a place, on the in-memory services (no daemons)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_settings
from config.errors import ConfigError
from tasks.index.changes import diff_manifests
from tasks.index.manifests import IndexManifest, namespace_for
from tasks.index.plans import next_manifest
from tasks.pipeline import index_steps
from tasks.pipeline.index_steps import InlineSteps
from tasks.pipeline.scheduler import Reporter, Scheduler
from tasks.search.related import identifiers, related_code
from tasks.services import Services, in_memory_services
from tests.git_support import make_repo

FILES: dict[str, str | bytes] = {
    "shop/cart.py": (
        "class Cart:\n    def total_price(self):\n"
        "        return sum(item.price * item.quantity for item in self.items)\n"
    ),
    "shop/checkout.py": (
        "from shop.cart import Cart\n\n\ndef checkout(cart: Cart) -> int:\n"
        "    amount = cart.total_price()\n    return charge(amount)\n"
    ),
    "shop/dates.py": "def parse_iso_date(value):\n    return date.fromisoformat(value)\n",
    "shop/auth.py": "def hash_password(password, salt):\n    return pbkdf2(password, salt)\n",
}


def indexed(tmp_path: Path) -> tuple[Services, Path]:
    settings = load_settings({"CODEFLOW_HOME": str(tmp_path / "home"), "CODEFLOW_CPU_WORKERS": "0"})
    svc = in_memory_services(settings, tmp_path / "home")
    repo = make_repo(tmp_path / "repo", FILES)
    fp = index_steps.fingerprint(str(repo))
    namespace = namespace_for(fp.repo_id, "main")
    target = (namespace, fp.repo_id, "main")
    scheduler = Scheduler(
        InlineSteps(svc, target),
        Reporter(svc.bus, {}),
        keys=svc.embeddings.keys,
        embed_batch=8,
        write_batch=8,
    )
    scheduler.submit_loads(fp.root, sorted(fp.files))
    loaded = scheduler.run(frozenset(), frozenset())
    base = IndexManifest(fp.repo_id, "main", fp.root, fp.head, svc.embedder_identity[0])
    manifest = next_manifest(None, base, diff_manifests(None, fp.files), fp.files, loaded)
    index_steps.commit(svc, manifest, namespace)
    return svc, repo


def test_the_code_that_shares_names_comes_first(tmp_path: Path) -> None:
    svc, repo = indexed(tmp_path)
    hits = related_code(svc, str(repo), "shop/cart.py", 2, limit=3)
    assert hits[0]["path"] == "shop/checkout.py"  # calls total_price, imports Cart
    assert all(h["path"] != "shop/cart.py" for h in hits)  # never the place itself
    assert {"path", "start_line", "end_line", "score", "text"} <= set(hits[0])


def test_a_file_that_is_not_indexed_is_a_clear_error(tmp_path: Path) -> None:
    svc, repo = indexed(tmp_path)
    with pytest.raises(ConfigError, match=r"shop/missing\.py is not indexed"):
        related_code(svc, str(repo), "shop/missing.py", 1)
    with pytest.raises(ConfigError, match="limit"):
        related_code(svc, str(repo), "shop/cart.py", 1, limit=0)


def test_a_chunks_query_is_its_names() -> None:
    text = "def checkout(cart):\n    amount = cart.total_price()\n    return charge(amount)\n"
    names = identifiers(text, "checkout")
    assert names[0] == "checkout" and {"cart", "amount", "total_price"} <= set(names)
    assert "return" not in names

"""Build the embedder and the vector store that Settings choose.

``local`` + ``lancedb`` need nothing; ``openai`` and ``pinecone`` need their keys, and are
checked before any work starts: a missing key, an unknown model, a width the model cannot
make or an index of another dimension raise :class:`~config.errors.ConfigError` /
:class:`~config.errors.VectorStoreError` with one line naming what to change. Heavy client
libraries are imported only when chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings
from config.errors import ConfigError
from config.storage import PINECONE_CATALOG, StoreLocation, lancedb_location

if TYPE_CHECKING:
    from tasks.embedding import Embedder
    from tasks.services import Services
    from tasks.vectors import IndexStore


def embedding_dimensions(settings: Settings) -> int:
    """The width of the chosen embedder's vectors, known without building it."""
    if settings.embedder == "openai":
        from tasks.embedding.openai_embedder import resolve_dimensions

        return resolve_dimensions(settings.openai_model, settings.openai_dimensions)
    return settings.embedding_dimensions


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "openai":
        from tasks.embedding.openai_embedder import OpenAIEmbedder

        key = settings.openai_api_key
        embedder = OpenAIEmbedder(
            api_key=key.get_secret_value() if key else "",
            model=settings.openai_model,
            dimensions=settings.openai_dimensions,
            base_url=settings.openai_base_url,
            rpm=settings.openai_rpm,
            tpm=settings.openai_tpm,
            max_retries=settings.openai_max_retries,
            timeout_s=settings.openai_timeout_s,
            long_inputs=settings.openai_long_inputs,
        )
        if settings.openai_check:
            embedder.check()
        return embedder
    from tasks.embedding.local_embedder import LocalEmbedder

    return LocalEmbedder(dimensions=settings.embedding_dimensions)


def build_store(settings: Settings) -> IndexStore:
    dimensions = embedding_dimensions(settings)
    if settings.store == "pinecone":
        from tasks.vectors.pinecone_store import PineconeStore

        key = settings.pinecone_api_key
        store = PineconeStore(
            api_key=key.get_secret_value() if key else "",
            dimensions=dimensions,
            catalog_dir=settings.pinecone_catalog or _catalog_dir(settings),
            index_name=settings.pinecone_index,
            host=settings.pinecone_host,
            controller_host=settings.pinecone_controller_host,
            timeout_s=settings.pinecone_timeout_s,
            catalog_shared=settings.shared_store,
        )
        store.check()
        return store
    from tasks.vectors.lance_store import LanceStore

    location = lancedb_location(settings.store_uri, settings.home)
    return LanceStore(location, dimensions, shared=_checked_store(settings))


def _checked_store(settings: Settings) -> StoreLocation | None:
    """The shared object store, after one request proves bucket, credentials and endpoint
    (None: the tables are in a folder)."""
    shared = settings.shared_store
    if shared is not None:
        from tasks.objects.s3_objects import S3Objects

        S3Objects(shared).check()
    return shared


def _catalog_dir(settings: Settings) -> str | Path:
    """A Pinecone store's chunk catalog: beside the manifests in the shared bucket, else
    under the home."""
    shared = settings.shared_store
    return shared.child(PINECONE_CATALOG) if shared else settings.home / "pinecone-catalog"


def check_backends(rt: Services) -> None:
    """Build the run's embedder and store now (they are cached on ``rt``), so that a missing
    key, an unknown model or a dimension mismatch fails in one line before a flow starts."""
    if rt.embedder.dimensions != rt.store.dimensions:
        raise ConfigError(
            f"{rt.embedder.id} makes {rt.embedder.dimensions}-dim vectors but the store holds "
            f"{rt.store.dimensions}"
        )

"""The one Settings object.

Variables inherited from the seed keep their names and defaults (``REDIS_URL``,
``WEBSOCKET_PORT`` ...); everything else uses the ``CODEFLOW_`` prefix. Nothing reads the
environment at import time: call :func:`load_settings` at an edge (the CLI, the server's
``main``, a flow entry point) and pass the object down.

>>> settings = load_settings({"CACHE_TTL_DAYS": "7"})
>>> settings.cache_ttl_seconds
604800
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from config.errors import ConfigError, SettingsError
from config.storage import StoreLocation


class Settings(BaseSettings):
    """Every knob codeflow has, with the environment variable that sets it."""

    model_config = SettingsConfigDict(env_prefix="CODEFLOW_", frozen=True, extra="ignore")

    # --- names and defaults inherited from the seed ---
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    pinecone_api_key: SecretStr | None = Field(None, validation_alias="PINECONE_API_KEY")
    cors_origin: str = Field("http://localhost:3000", validation_alias="CORS_ORIGIN")
    websocket_port: int = Field(3001, ge=1, le=65535, validation_alias="WEBSOCKET_PORT")
    cache_ttl_days: float = Field(30, gt=0, le=3650, validation_alias="CACHE_TTL_DAYS")
    sandbox_timeout_ms: int = Field(
        30000, ge=100, le=3_600_000, validation_alias="SANDBOX_TIMEOUT_MS"
    )
    #: The container runtime of the sandbox: ``runc`` (Docker's), or ``runsc`` (gVisor,
    #: registered with the engine by scripts/register-gvisor).
    sandbox_runtime: Literal["runc", "runsc"] = Field("runc", validation_alias="SANDBOX_RUNTIME")

    # --- codeflow's own (CODEFLOW_*) ---
    home: Path = Path("~/.codeflow")
    tenant: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,32}$")  # prefixes cache namespaces
    redis_timeout_s: float = Field(0.25, gt=0, le=30)
    redis_retry_after_s: float = Field(1.0, ge=0, le=300)
    events_maxlen: int = Field(100_000, ge=100)
    embedder: Literal["local", "openai"] = "local"
    store: Literal["lancedb", "pinecone"] = "lancedb"
    sandbox_image: str = "codeflow-sandbox:latest"
    # Pre-started single-use containers kept ready in a long-lived process (0: none; each
    # run starts its own container). See docs/sandbox.md, "The warm pool".
    sandbox_pool_size: int = Field(0, ge=0, le=16)
    # Where the host's /proc and cgroup tree are seen from here: a worker in a container
    # mounts them elsewhere (docker-compose.yml) to verify each sandbox's live limits.
    sandbox_host_proc: Path = Path("/proc")
    sandbox_host_cgroup: Path = Path("/sys/fs/cgroup")
    embedding_dimensions: int = Field(256, ge=8, le=8192)
    embed_batch_size: int | None = Field(None, ge=1, le=65_536)  # None: see embedding_batch
    embed_concurrency: int = Field(2, ge=1, le=64)
    max_file_bytes: int = Field(1_000_000, ge=1024)
    cpu_workers: int | None = Field(None, ge=0, le=64)  # None: one per core; 0: in-process
    # The vector half's weight against BM25's 1 in hybrid search; None: the embedder's own
    # (tasks.search.hybrid.semantic_weight_for).
    semantic_weight: float | None = Field(None, ge=0, le=100)
    token_secret: SecretStr | None = None  # signs WebSocket tokens; else a file under home
    # Requests each token may make of the HTTP API (/api/...): so many a minute, BURST at once.
    rate_limit_per_min: float = Field(600, gt=0, le=1_000_000)
    rate_limit_burst: int = Field(60, ge=1, le=100_000)
    bind_address: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # --- production backends: CODEFLOW_EMBEDDER=openai, CODEFLOW_STORE=pinecone ---
    openai_model: str = "text-embedding-3-small"
    openai_base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible server
    openai_dimensions: int | None = Field(None, ge=1, le=8192)  # None: the model's own width
    openai_rpm: float = Field(3000, gt=0)  # requests per minute (lowered by server headers)
    openai_tpm: float = Field(1_000_000, gt=0)  # tokens per minute (lowered by headers)
    openai_max_retries: int = Field(5, ge=0, le=20)
    openai_timeout_s: float = Field(60.0, gt=0, le=600)
    openai_long_inputs: Literal["split", "truncate"] = "split"
    openai_check: bool = True  # one tiny request at start-up proves key, model and width
    pinecone_index: str = ""
    pinecone_host: str = ""  # the index's data-plane host (skips the describe request)
    pinecone_controller_host: str = ""  # control plane; empty: Pinecone's public API
    pinecone_catalog: str = ""  # chunk texts + BM25 (LanceDB); empty: <home>/pinecone-catalog
    pinecone_timeout_s: float = Field(30.0, gt=0, le=600)
    task_runner: Literal["threads", "dask"] = "threads"  # engine of the embedding fan-out
    dask_address: str | None = None  # a running scheduler (tcp://host:8786); else a LocalCluster
    dask_workers: int = Field(2, ge=1, le=256)  # workers of that temporary LocalCluster

    # --- shared object storage (docs/indexing-and-search.md, "Shared storage (S3)") ---
    #: Where the LanceDB tables live: a folder, or ``s3://BUCKET/PREFIX`` (then the manifests
    #: and the registry live beside them). None: ``<home>/lancedb``.
    store_uri: str | None = None
    s3_endpoint: str | None = None  # an S3-compatible server (http://minio:9000); None: AWS
    aws_access_key_id: SecretStr | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")
    aws_session_token: SecretStr | None = Field(None, validation_alias="AWS_SESSION_TOKEN")
    aws_region: str | None = Field(None, validation_alias="AWS_REGION")

    # --- the on-demand local service (flows/service) ---
    #: ``auto``: index, search, related, status and sandbox run go to the local service
    #: (started on first use); ``off``: every command runs in its own process.
    service: Literal["auto", "off"] = "auto"
    service_idle_s: float = Field(3 * 3600, ge=0)  # the service exits after this idle; 0: never
    service_port: int = Field(0, ge=0, le=65535)  # its HTTP API, WebSocket, MCP; 0: a free port

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls: type[BaseSettings], init_settings: Any, **_: Any
    ) -> tuple[Any, ...]:
        """Only explicit values: :func:`load_settings` does the environment lookup."""
        return (init_settings,)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("redis_url", mode="after")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("a URL starting with redis://, rediss:// or unix://")
        return value

    @field_validator("store_uri", mode="after")
    @classmethod
    def _check_store_uri(cls, value: str | None) -> str | None:
        if not value:
            return None
        if "://" not in value:
            return str(Path(value).expanduser().absolute())
        try:
            StoreLocation.parse(value)
        except ConfigError:
            raise ValueError("s3://BUCKET[/PREFIX] or a folder") from None
        return value.rstrip("/")

    @field_validator("s3_endpoint", mode="after")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or "@" in value:
            raise ValueError("a URL starting with http:// or https://, without credentials")
        return value.rstrip("/")

    @property
    def shared_store(self) -> StoreLocation | None:
        """The object store of ``CODEFLOW_STORE_URI`` (None: a folder on this machine)."""
        if self.store_uri is None or not self.store_uri.startswith("s3://"):
            return None
        return StoreLocation.parse(
            self.store_uri,
            endpoint=self.s3_endpoint,
            region=self.aws_region,
            access_key_id=self.aws_access_key_id,
            secret_access_key=self.aws_secret_access_key,
            session_token=self.aws_session_token,
        )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The fields, with a password in ``REDIS_URL`` hidden as ``SecretStr`` fields are:
        Settings travel pickled to other processes (Dask workers), whose logs may show them."""
        for name, value in super().__repr_args__():
            yield name, _without_password(value) if name == "redis_url" else value

    @property
    def cache_ttl_seconds(self) -> int:
        return max(1, int(self.cache_ttl_days * 86400))

    @property
    def embedding_batch(self) -> int:
        """Chunks per embedding task: ``CODEFLOW_EMBED_BATCH_SIZE``, else 8,192 for the local
        model (fewer, larger tasks: each task run costs Prefect's API ~40 ms) and 2,048 for
        remote APIs (one request's worth; the OpenAI client splits larger ones anyway)."""
        if self.embed_batch_size is not None:
            return self.embed_batch_size
        return 8192 if self.embedder == "local" else 2048

    @property
    def sandbox_timeout_s(self) -> float:
        return self.sandbox_timeout_ms / 1000


def _without_password(url: Any) -> Any:
    """``url`` with its password, if any, shown as ``**********``."""
    if not isinstance(url, str) or not urlsplit(url).password:
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:**********@{host}").geturl()


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment parsing, over a mapping we choose (tests inject one)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = {k.lower(): v for k, v in environ.items()}
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ


_EXPECTED = {
    "int_parsing": "an integer",
    "float_parsing": "a number",
    "literal_error": "one of {expected}",
    "greater_than": "a number greater than {gt:g}",
    "greater_than_equal": "a number of at least {ge:g}",
    "less_than_equal": "a number of at most {le:g}",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: the process environment).

    Raises :class:`SettingsError` with one line such as
    ``WEBSOCKET_PORT: expected an integer, got 'abc'``.
    """
    if environ is None:  # remembered per environment: every task's state hooks ask for it
        return _from_environment(frozenset(os.environ.items()))
    source = _MappingEnvSource(environ)
    try:
        return Settings(**source())
    except ValidationError as exc:
        raise SettingsError(_describe(exc), variable=_variable(exc)) from None


@functools.lru_cache(maxsize=16)
def _from_environment(environ: frozenset[tuple[str, str]]) -> Settings:
    return load_settings(dict(environ))


def with_backends(settings: Settings, embedder: str | None, store: str | None) -> Settings:
    """``settings`` with the embedder and/or vector store replaced (validated like the
    environment: ``--embedder``/``--store`` and flow parameters go through here)."""
    changes = {k: v for k, v in (("embedder", embedder), ("store", store)) if v is not None}
    if not changes:
        return settings
    try:
        return Settings(**{**dict(settings), **changes})
    except ValidationError as exc:
        raise SettingsError(_describe(exc), variable=_variable(exc)) from None


def _variable(exc: ValidationError) -> str:
    """The environment variable of the first error."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    # Seed variables are validated under their alias; the rest under the field name.
    return f"CODEFLOW_{field.upper()}" if field in Settings.model_fields else field


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    name = _variable(exc)
    template = _EXPECTED.get(error["type"])
    ctx = error.get("ctx", {})
    expected = template.format(**ctx) if template else str(ctx.get("error", error["msg"]))
    hidden = any(word in name for word in ("KEY", "SECRET", "TOKEN"))
    shown = "(hidden)" if hidden else repr(error.get("input"))
    return f"{name}: expected {expected}, got {shown}"

"""Where codeflow keeps what every worker and server shares: the LanceDB tables and, on an
object store, the manifests and the repository registry beside them.

``CODEFLOW_STORE_URI`` names it: unset, the tables live under ``CODEFLOW_HOME/lancedb`` and
the manifests and the registry under ``CODEFLOW_HOME`` (one machine); ``s3://bucket/prefix``
puts all three in that bucket (``CODEFLOW_S3_ENDPOINT`` for S3-compatible servers, the
standard ``AWS_*`` variables for credentials), so any worker writes and any server reads.

>>> location = StoreLocation.parse("s3://team-code/codeflow/")
>>> location.bucket, location.prefix, location.key("_manifests", "lancedb")
('team-code', 'codeflow', 'codeflow/_manifests/lancedb')
>>> StoreLocation.parse("s3://team-code").uri
's3://team-code'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from config.errors import ConfigError

#: Beside the tables in the bucket: the manifests (one folder per kind of vector store),
#: the registry, and a Pinecone store's chunk catalog. LanceDB names tables ``*.lance``.
MANIFESTS = "_manifests"
REGISTRY = "_registry.json"
PINECONE_CATALOG = "_pinecone-catalog"


@dataclass(frozen=True)
class StoreLocation:
    """An ``s3://`` store: bucket, key prefix, endpoint and credentials (never shown)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None  # http(s)://host:port of an S3-compatible server; None: AWS
    region: str | None = None
    access_key_id: SecretStr | None = field(default=None, repr=False)
    secret_access_key: SecretStr | None = field(default=None, repr=False)
    session_token: SecretStr | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, uri: str, **options: object) -> StoreLocation:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"CODEFLOW_STORE_URI: expected s3://BUCKET[/PREFIX], got {uri!r}")
        return cls(parts.netloc, parts.path.strip("/"), **options)  # type: ignore[arg-type]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def child(self, name: str) -> str:
        """The ``s3://`` URI of ``name`` under the prefix."""
        return f"s3://{self.bucket}/{self.key(name)}"

    @property
    def allows_http(self) -> bool:
        return self.endpoint is not None and self.endpoint.startswith("http://")

    def storage_options(self) -> dict[str, str]:
        """LanceDB's ``storage_options`` (secrets included: hand them to the library only)."""
        options = {"aws_region": self.region or "us-east-1"}
        secrets = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }
        options.update({k: v.get_secret_value() for k, v in secrets.items() if v is not None})
        if self.endpoint is not None:
            options["aws_endpoint"] = self.endpoint
        if self.allows_http:
            options["allow_http"] = "true"
        return options


def lancedb_location(store_uri: str | None, home: Path) -> str | Path:
    """Where LanceDB opens its tables: the store URI, or ``home/lancedb``."""
    return store_uri if store_uri else home / "lancedb"

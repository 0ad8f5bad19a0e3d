"""codeflow's one error tree. Adapters map library errors onto it with ``raise ... from exc``.

    CodeflowError            root of every error codeflow raises on purpose
    ├── ConfigError          a setting or argument is wrong (what to change is in the message)
    │   ├── SettingsError        an environment variable has a bad value (``variable``)
    │   ├── ParameterError       a flow or command parameter is wrong (``parameter``)
    │   └── TokenError           a token is forged, malformed or expired
    ├── CacheKeyError        a cache key, namespace, tag or pattern is malformed (``key``)
    ├── RedisUnavailable     Redis could not be reached (the cache degrades instead of raising)
    ├── AccessDenied         a valid token lacks the grant asked for (``needed``; HTTP 403)
    ├── RepositoryError      the path is missing, not a git repository, or unusable
    │   │                    (``repository``, ``path``)
    │   ├── SyncFailed           registered repositories failed to sync (``failures``)
    │   └── RepositoryHidden     no indexed repository the token may read there (``path``;
    │                            one answer whatever the reason, HTTP 404)
    ├── WorkerError          a worker process died mid-request (``pid``; the task retries)
    ├── EmbedderError        the embedding backend failed after its retries (``model``)
    ├── VectorStoreError     the vector store failed or disagrees with the embedder
    │                        (``namespace``)
    ├── StorageError         the shared object store (CODEFLOW_STORE_URI) cannot be used:
    │                        no bucket, refused credentials, unreachable (``uri``)
    ├── SandboxError         the sandbox infrastructure failed (``container_id``, ``run_id``)
    │   ├── DockerUnavailable    the engine cannot be reached
    │   ├── ImageMissing         the sandbox image is not built
    │   └── LimitsNotApplied     the container did not carry every limit asked for
    ├── ServiceError         the local service did not start, or stopped mid-request
    ├── RunAbandoned         a flow run came back too many times (``attempts``)
    ├── ProtocolError        a WebSocket client message is refused (``code``)
    └── TransportClosed      a client connection closed while we wrote to it

Every message is one line saying what was wrong and what to do; the attributes carry the
same context as data (logs, API answers). A user's program failing in the sandbox is data
in its result, never an exception.

The tree lives in ``config`` because every layer, ``config`` included, raises from it, and
``config`` imports nothing else of the project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


class CodeflowError(Exception):
    """Root of every error codeflow raises on purpose."""


class ConfigError(CodeflowError):
    """A setting or argument is wrong."""


class SettingsError(ConfigError, ValueError):
    """An environment variable has a bad value; the message is one line naming it."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class ParameterError(ConfigError):
    """A parameter typed into the Prefect UI or the command line is wrong."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class TokenError(ConfigError):
    """A token is forged, malformed or expired."""


class AccessDenied(CodeflowError):
    """A valid token does not grant ``needed`` (a room such as ``sandbox``)."""

    def __init__(self, message: str, *, needed: str) -> None:
        super().__init__(message)
        self.needed = needed


class CacheKeyError(CodeflowError, ValueError):
    """A cache key, namespace, tag or pattern is malformed (injection, wildcards, size)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class RedisUnavailable(CodeflowError):
    """Redis could not be reached."""


class RepositoryError(CodeflowError):
    """The repository path is missing, not a git repository, or unusable."""

    def __init__(
        self, message: str, *, repository: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message)
        self.repository = repository
        self.path = path


class SyncFailed(RepositoryError):
    """Some registered repositories could not be synced; ``failures`` maps each name to why."""

    def __init__(self, message: str, *, failures: Mapping[str, str]) -> None:
        super().__init__(message)
        self.failures = dict(failures)


class RepositoryHidden(RepositoryError):
    """No indexed repository the token may read at ``path``: missing, not a repository, not
    indexed and not granted all raise this same error, so an answer tells nothing apart."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no indexed repository you may read at {path}", path=path)


class WorkerError(CodeflowError):
    """A chunking/embedding worker process died or broke the protocol mid-request."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class EmbedderError(CodeflowError):
    """The embedding backend failed after its retries."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class VectorStoreError(CodeflowError):
    """The vector store failed or is inconsistent with the embedder."""

    def __init__(self, message: str, *, namespace: str | None = None) -> None:
        super().__init__(message)
        self.namespace = namespace


class StorageError(CodeflowError):
    """The shared object store failed; the message says which setting to check."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class SandboxError(CodeflowError):
    """The sandbox infrastructure failed (not the user's code)."""

    def __init__(
        self, message: str, *, container_id: str | None = None, run_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.container_id = container_id
        self.run_id = run_id


class DockerUnavailable(SandboxError):
    """The Docker engine could not be reached."""


class ImageMissing(SandboxError):
    """The sandbox image is not built."""


class LimitsNotApplied(SandboxError):
    """The container that ran did not carry every limit that was asked for."""


class RunAbandoned(CodeflowError):
    """A flow run started again too many times (its workers were lost, or it was retried):
    it fails instead of going on for ever; a new run starts afresh."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ServiceError(CodeflowError):
    """The local service (``codeflow service``) did not start or stopped mid-request."""


class ProtocolError(CodeflowError, ValueError):
    """A client message we refuse; answered with an error frame, the connection stays."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransportClosed(CodeflowError):
    """The client connection closed while a frame was being written."""

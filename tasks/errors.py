"""codeflow's one error tree. Adapters map library errors onto it with ``raise ... from exc``.

    CodeflowError
    ├── ConfigError          a setting or argument is wrong (what to change is in the message)
    ├── CacheKeyError        a cache key, namespace, tag or pattern is malformed
    ├── RedisUnavailable     Redis could not be reached (the cache degrades instead of raising)
    ├── RepositoryError      the path is missing, not a git repository, or has no commits
    ├── WorkerError          a worker process died mid-request (the flow's task retries)
    ├── EmbedderError        the embedding backend failed after its retries
    ├── VectorStoreError     the vector store failed or disagrees with the embedder
    └── SandboxError         the sandbox infrastructure failed (not the user's code:
        ├── DockerUnavailable    a failing program is data in the result, not an exception)
        ├── ImageMissing
        └── LimitsNotApplied

Every message is one line saying what was wrong and what to do.
"""


class CodeflowError(Exception):
    """Root of every error codeflow raises on purpose."""


class ConfigError(CodeflowError):
    """A setting or argument is wrong."""


class CacheKeyError(CodeflowError, ValueError):
    """A cache key, namespace, tag or pattern is malformed (injection, wildcards, size)."""


class RedisUnavailable(CodeflowError):
    """Redis could not be reached."""


class RepositoryError(CodeflowError):
    """The repository path is missing, not a git repository, or unusable."""


class EmbedderError(CodeflowError):
    """The embedding backend failed after its retries."""


class VectorStoreError(CodeflowError):
    """The vector store failed or is inconsistent with the embedder."""


class SandboxError(CodeflowError):
    """The sandbox infrastructure failed."""


class DockerUnavailable(SandboxError):
    """The Docker engine could not be reached."""


class ImageMissing(SandboxError):
    """The sandbox image is not built."""


class LimitsNotApplied(SandboxError):
    """The container that ran did not carry every limit that was asked for."""


class WorkerError(CodeflowError):
    """A chunking/embedding worker process died or broke the protocol mid-request."""

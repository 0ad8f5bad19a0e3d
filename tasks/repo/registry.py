"""The repositories codeflow keeps fresh, and the clones it manages for git URLs.

**Where the registry lives.** One JSON file, ``CODEFLOW_HOME/registry.json``, beside the
clones (``CODEFLOW_HOME/repos/<name>``), the manifests and the LanceDB store it describes. Not
Redis: Redis is codeflow's cache and event bus, where every key has a TTL and may be evicted,
and losing the list of repositories to keep fresh is not a cache miss. Every change is a
read-modify-write under an exclusive ``flock`` on ``registry.json.lock``, written to a
temporary file, fsynced and renamed over the old one, so a `codeflow repo add` racing a sync
run never loses an entry and a reader never sees half a file.

With a shared object store (``CODEFLOW_STORE_URI=s3://...``) the registry is the object
``<prefix>/_registry.json`` beside the tables and the manifests instead (:func:`registry_for`),
replaced whole by each change; the ``flock`` then serialises one machine's writers only (S3
has no lock: two machines changing it in the same instant keep the later change).

**Per-repository schedules.** The ``sync`` deployment runs on its own cron (prefect.yaml);
each run syncs the repositories that are *due*: those without a schedule, never synced, or
whose cron line fired since their last sync (:func:`is_due`).

>>> registry = Registry(Path("/tmp/home"))                              # doctest: +SKIP
>>> registry.add(parse_source("file:///srv/git/app.git"), schedule="0 * * * *")  # doctest: +SKIP
RegisteredRepo(name='app', source='file:///srv/git/app.git', kind='url', ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import git
import orjson
from cronsim import CronSim

from config import Settings
from config.errors import ConfigError, RepositoryError
from config.paths import file_lock
from config.storage import REGISTRY
from tasks.objects.s3_objects import S3Objects
from tasks.repo.source_params import Source

REGISTRY_FILE = "registry.json"
REPOS_DIR = "repos"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_VERSION = 1


@dataclass(frozen=True)
class RegisteredRepo:
    """One repository to keep fresh; ``source`` is an absolute path or a git URL."""

    name: str
    source: str
    kind: Literal["path", "url"]
    branch: str | None = None
    schedule: str | None = None
    added_at: float = 0.0
    last_synced: float | None = None
    last_commit: str | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegisteredRepo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def matches(self, key: str) -> bool:
        """``key`` is this entry's name, its source, or (for paths) the same folder."""
        if key in (self.name, self.source):
            return True
        if self.kind == "path":
            with contextlib.suppress(OSError):
                return str(Path(key).expanduser().resolve()) == self.source
        return False


def default_name(source: Source, branch: str | None = None) -> str:
    """A folder-safe name: the URL's or folder's last part, ``.git`` dropped, plus the branch.

    >>> default_name(Source("url", "git@github.com:org/Tool.git"), "dev")
    'Tool-dev'
    """
    tail = source.value.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    base = tail.removesuffix(".git") or "repo"
    if branch:
        base = f"{base}-{branch}"
    return _UNSAFE.sub("_", base).strip("._") or "repo"


def suffixed(name: str, source: str) -> str:
    """``name`` made unique to ``source`` (used when the plain name is already taken)."""
    return f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def is_due(entry: RegisteredRepo, now: float) -> bool:
    """Should a sync run at ``now`` (epoch seconds) refresh ``entry``?"""
    if entry.schedule is None or entry.last_synced is None:
        return True
    moment = datetime.fromtimestamp(now, tz=UTC)
    fired = next(iter(CronSim(entry.schedule, moment, reverse=True)))
    return fired.timestamp() > entry.last_synced


def registry_for(settings: Settings) -> Registry:
    """The registry ``settings`` describe: in the shared bucket, else under the home."""
    shared = settings.shared_store
    if shared is None:
        return Registry(settings.home)
    return Registry(settings.home, objects=S3Objects(shared), key=shared.key(REGISTRY))


class Registry:
    """The registry file under ``home`` (or the object ``key`` of ``objects``); every method
    reads it afresh."""

    def __init__(self, home: Path, *, objects: S3Objects | None = None, key: str = "") -> None:
        self.home = home
        self.path = home / REGISTRY_FILE
        self._objects = objects
        self._key = key
        self.where = f"s3://{objects.location.bucket}/{key}" if objects else str(self.path)

    def entries(self) -> list[RegisteredRepo]:
        return sorted(self._read(), key=lambda e: e.name)

    def find(self, key: str) -> list[RegisteredRepo]:
        return [e for e in self.entries() if e.matches(key)]

    def add(
        self,
        source: Source,
        *,
        branch: str | None = None,
        schedule: str | None = None,
        name: str | None = None,
    ) -> RegisteredRepo:
        """Register ``source`` (+ ``branch``); adding it again updates its schedule."""
        with self._locked() as entries:
            for i, entry in enumerate(entries):
                if entry.source == source.value and entry.branch == branch:
                    entries[i] = replace(entry, schedule=schedule)
                    return entries[i]
            chosen = name or default_name(source, branch)
            if any(e.name == chosen for e in entries):
                if name:
                    raise ConfigError(f"a repository named {name!r} is already registered")
                chosen = suffixed(chosen, f"{source.value}@{branch or ''}")
            added = RegisteredRepo(
                chosen, source.value, source.kind, branch, schedule, added_at=time.time()
            )
            entries.append(added)
            return added

    def remove(self, key: str) -> list[RegisteredRepo]:
        """Unregister every entry ``key`` matches; raises if none does."""
        with self._locked() as entries:
            gone = [e for e in entries if e.matches(key)]
            if not gone:
                known = ", ".join(e.name for e in entries) or "none"
                raise ConfigError(f"{key!r} is not registered (registered: {known})")
            entries[:] = [e for e in entries if e not in gone]
            return gone

    def record(
        self, name: str, *, at: float, commit: str | None = None, error: str | None = None
    ) -> None:
        """Note the outcome of a sync; an entry removed meanwhile is left removed."""
        with self._locked() as entries:
            for i, entry in enumerate(entries):
                if entry.name == name:
                    synced = at if error is None else entry.last_synced
                    last = commit or entry.last_commit
                    entries[i] = replace(
                        entry, last_synced=synced, last_commit=last, last_error=error
                    )

    def _read_bytes(self) -> bytes | None:
        if self._objects is not None:
            return self._objects.read(self._key)
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _read(self) -> list[RegisteredRepo]:
        raw = self._read_bytes()
        if raw is None:
            return []
        try:
            data = orjson.loads(raw)
            return [RegisteredRepo.from_json(item) for item in data["repositories"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.where} is not a codeflow registry ({exc}); fix or remove it"
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[RegisteredRepo]]:
        """Read-modify-write under an exclusive lock; written back only if the body succeeds."""
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path.with_name(REGISTRY_FILE + ".lock")):
            entries = self._read()
            yield entries
            self._write(entries)

    def _write(self, entries: list[RegisteredRepo]) -> None:
        payload = {"version": _VERSION, "repositories": [asdict(e) for e in entries]}
        data = orjson.dumps(payload, option=orjson.OPT_INDENT_2)
        if self._objects is not None:
            self._objects.put(self._key, data)  # one write: readers see old or new, whole
            return
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".registry-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


class Checkouts:
    """The clones codeflow manages under ``CODEFLOW_HOME/repos`` (GitPython).

    A clone is codeflow's own: :meth:`ensure` makes its work tree exactly the remote branch
    (fetch, ``checkout -B``, ``reset --hard``, ``clean``), so a force-push upstream is
    followed, never merged. One ``flock`` per clone serialises two runs fetching it at once.
    """

    def __init__(self, home: Path) -> None:
        self.directory = home / REPOS_DIR

    def work_tree(self, entry: RegisteredRepo) -> Path:
        """Where ``entry``'s files are: its own folder, or the clone codeflow keeps of it."""
        return (
            Path(entry.source) if entry.kind == "path" else self.path_for(entry.source, entry.name)
        )

    def path_for(self, url: str, name: str) -> Path:
        """``repos/<name>``, or a name suffixed by the URL's hash if ``name`` holds another."""
        plain = self.directory / name
        origin = _origin_of(plain)
        if origin is None or origin == url:
            return plain
        return self.directory / suffixed(name, url)

    def ensure(self, url: str, name: str, branch: str | None = None) -> Path:
        """Clone ``url`` (or fetch it again) and check out ``branch`` (default: the remote's)."""
        target = self.path_for(url, name)
        self.directory.mkdir(parents=True, exist_ok=True)
        with file_lock(self.directory / f".{target.name}.lock"):
            if _origin_of(target) is None:
                _clone(url, target)
            _update(target, url, branch)
        return target

    def remove(self, url: str, name: str) -> bool:
        """Delete the clone of ``url`` named ``name``, if codeflow made one."""
        target = self.path_for(url, name)
        if _origin_of(target) != url:
            return False
        shutil.rmtree(target)
        return True


_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "GIT_SSH_COMMAND": "ssh -oBatchMode=yes",
}


def _origin_of(path: Path) -> str | None:
    """The ``origin`` URL of the clone at ``path``; ``None`` if there is no clone."""
    if not (path / ".git").exists():
        return None
    try:
        with git.Repo(path) as repo:
            return str(repo.remotes.origin.url) if "origin" in repo.remotes else ""
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return ""


def _clone(url: str, target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        raise RepositoryError(f"{target} exists and is not a clone of {url}; move it away")
    try:
        git.Repo.clone_from(url, target, env=_GIT_ENV, no_checkout=True).close()
    except git.GitCommandError as exc:
        raise RepositoryError(f"cannot clone {url}: {_git_message(exc)}") from None


def _update(target: Path, url: str, branch: str | None) -> None:
    """Fetch, then make the work tree exactly ``origin/<branch>`` on a local ``<branch>``."""
    with git.Repo(target) as repo:
        repo.git.update_environment(**_GIT_ENV)
        try:
            repo.git.fetch("origin", "--prune", "--force", "--no-tags")
            name = branch or _remote_default(repo)
            if f"origin/{name}" not in {ref.name for ref in repo.remotes.origin.refs}:
                raise RepositoryError(f"{url} has no branch {name!r}")
            repo.git.checkout("--force", "-B", name, f"origin/{name}")
            repo.git.reset("--hard", f"origin/{name}")
            repo.git.clean("-ffdqx")
        except git.GitCommandError as exc:
            raise RepositoryError(
                f"cannot update the clone of {url}: {_git_message(exc)}"
            ) from None


def _remote_default(repo: git.Repo) -> str:
    """The remote's default branch (``origin/HEAD``, asking the remote if it is unknown)."""
    try:
        ref = repo.git.symbolic_ref("--short", "refs/remotes/origin/HEAD")
    except git.GitCommandError:
        repo.git.remote("set-head", "origin", "--auto")
        ref = repo.git.symbolic_ref("--short", "refs/remotes/origin/HEAD")
    return str(ref).removeprefix("origin/")


def _git_message(exc: Any) -> str:
    lines = [ln.strip() for ln in str(exc.stderr or "").splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines
    return (meaningful[-1] if meaningful else str(exc)).removeprefix("stderr: ").strip("'")

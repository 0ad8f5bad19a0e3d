"""What each request does: the one implementation behind ``codeflow index|search|related|
status|sandbox run`` (in the command's own process or in the service), the service's socket
and the MCP tools. Each operation takes plain values and returns JSON-ready ones.

Paths in a request are relative to the caller's working directory (``cwd``), which the thin
client sends along: the service's own working directory means nothing to the user. A
repository may also be named by its registered name (``codeflow repo add``), or by its
repository ID (read through the manifests: no checkout needed, e.g. on a shared store).

``index`` needs a Prefect API (the service's persistent one, or the temporary one the command
line starts); the others never start a flow.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from config import Settings, with_backends
from config.errors import ConfigError
from tasks.index.manifests import is_repository_id
from tasks.repo.git_repository import GitRepository
from tasks.services import services_for

#: The keys ``codeflow sandbox run --json`` prints.
SANDBOX_KEYS = (
    "status", "exit_code", "stdout", "stderr", "duration_s", "violations", "cached",
    "truncated", "oom_killed", "timed_out", "run_id", "image_id", "runtime", "seccomp",
    "resources",
)  # fmt: skip
EXIT_NOT_OK = 3  # sandbox run: the program did not end with status ok


def resolve_repo(settings: Settings, repo: str, cwd: str) -> str:
    """``repo`` as a path: a folder (absolute, ``~``, or relative to ``cwd``), else the work
    tree of the registered repository of that name, else a repository ID as it is (else the
    path, for the caller's error)."""
    candidate = Path(cwd, Path(repo).expanduser())
    if candidate.exists():
        return str(candidate)
    from tasks.repo.registry import Checkouts, registry_for

    entries = registry_for(settings).find(repo)
    if len(entries) == 1:
        return str(Checkouts(settings.home).work_tree(entries[0]))
    return repo if is_repository_id(repo) else str(candidate)


def search(
    settings: Settings,
    *,
    cwd: str,
    query: str,
    repo: str,
    limit: int = 10,
    embedder: str | None = None,
    store: str | None = None,
    branch: str | None = None,
) -> list[dict[str, Any]]:
    from tasks.search.repository_search import search_repository

    settings = with_backends(settings, embedder, store)
    path = resolve_repo(settings, repo, cwd)
    return search_repository(services_for(settings), path, query, limit, branch)


def related(
    settings: Settings,
    *,
    cwd: str,
    place: str,
    repo: str | None = None,
    limit: int = 10,
    embedder: str | None = None,
    store: str | None = None,
    branch: str | None = None,
) -> list[dict[str, Any]]:
    from tasks.search.related import related_code

    settings = with_backends(settings, embedder, store)
    repo = None if repo is None else resolve_repo(settings, repo, cwd)
    root, path, line = _place(place, repo, cwd)
    return related_code(services_for(settings), root, path, line, limit, branch=branch)


def _place(place: str, repo: str | None, cwd: str) -> tuple[str, str, int]:
    """``FILE:LINE`` as (repository, repo-relative path, line). FILE is a path on disk
    (absolute, or relative to ``cwd``) or, with ``repo``, relative to the repository."""
    file, sep, line = place.rpartition(":")
    if not sep or not line.isdigit() or int(line) < 1:
        raise ConfigError(f"{place!r}: expected FILE:LINE, e.g. src/app.py:42")
    on_disk = Path(cwd, Path(file).expanduser())
    if repo is not None and not Path(file).is_absolute() and not on_disk.exists():
        return repo, file, int(line)
    if not on_disk.exists():
        raise ConfigError(
            f"{file}: no such file; pass a path on disk, or --repo and a repo-relative path"
        )
    with GitRepository.open(repo or on_disk.parent) as opened:
        root = opened.root
    try:
        relative = on_disk.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(f"{file} is not inside the repository at {root}") from None
    return str(root), relative, int(line)


def status(
    settings: Settings,
    *,
    cwd: str,
    path: str,
    embedder: str | None = None,
    store: str | None = None,
    branch: str | None = None,
) -> dict[str, Any]:
    """What ``codeflow status --json`` prints."""
    from tasks.search.repository_search import indexed_manifest

    settings = with_backends(settings, embedder, store)
    root = resolve_repo(settings, path, cwd)
    manifest, namespace = indexed_manifest(services_for(settings), root, branch)
    reasons: dict[str, int] = {}
    for reason in manifest.skipped.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "repo_id": manifest.repo_id,
        "branch": manifest.branch,
        "namespace": namespace,
        "commit": manifest.commit,
        "files_total": len(manifest.chunks),
        "chunks_total": manifest.chunks_total,
        "skipped": reasons,
        "updated_at": manifest.updated_at,
        "files": {p: manifest.files[p] for p in manifest.chunks if p in manifest.files},
    }


def index_target(settings: Settings, *, cwd: str, path: str, branch: str | None) -> str:
    """The work tree to index (clear errors before any flow starts)."""
    with GitRepository.open(resolve_repo(settings, path, cwd)) as repo:
        root, label = str(repo.root), repo.branch_label()
    if branch and branch != label:
        raise ConfigError(f"branch {branch!r} is not checked out at {root} (HEAD: {label})")
    return root


def index(
    settings: Settings,
    *,
    root: str,
    trace_id: str,
    branch: str | None = None,
    full: bool = False,
    embedder: str | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Run the vectorize flow on ``root`` (from :func:`index_target`); its summary."""
    from flows.sync import vectorize_flow

    vectorize_repository = vectorize_flow(with_backends(settings, embedder, store))
    summary: dict[str, Any] = vectorize_repository(
        root, branch=branch, full=full, trace_id=trace_id, embedder=embedder, store=store
    )
    return summary


def check_backends(settings: Settings, embedder: str | None, store: str | None) -> None:
    """Keys, model, dimensions: one clear line before any work."""
    from tasks.backends import check_backends as check

    check(services_for(with_backends(settings, embedder, store)))


def sandbox_run(
    settings: Settings,
    *,
    code_b64: str,
    timeout_s: float | None = None,
    memory_mb: int = 512,
    use_cache: bool = True,
    ast_check: bool = True,
    runtime: str | None = None,
    prepare: bool = True,
) -> tuple[dict[str, Any], int]:
    """Run a program (its bytes, base64) in the sandbox: the result ``codeflow sandbox run
    --json`` prints, and the exit status (0 when the status is ``ok``). ``prepare`` checks the
    engine and sweeps leftovers first (the service does that once, at start)."""
    if timeout_s is not None and not 0 < timeout_s <= 3600:
        raise ConfigError("--timeout must be between 0 and 3600 seconds")
    code = program_text(base64.b64decode(code_b64))
    if not isinstance(code, str):  # nothing to run: no engine, no flow needed
        return _shown({**code, "cached": False}), EXIT_NOT_OK
    if runtime is not None:
        settings = settings.model_copy(update={"sandbox_runtime": runtime})
    if prepare:
        prepare_docker(settings)
    from flows.sandbox_run import run_sandboxed

    result = run_sandboxed(
        code,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        use_cache=use_cache,
        ast_check=ast_check,
        runtime=settings.sandbox_runtime,
    )
    return _shown(result), 0 if result["status"] == "ok" else EXIT_NOT_OK


def program_text(data: bytes) -> str | dict[str, Any]:
    """The program's text, or the ``rejected`` result of bytes that are not Python at all
    (not UTF-8, a syntax error): that is about the user's code, so it is a result."""
    from tasks.sandbox.models import ExecutionResult, Violation
    from tasks.sandbox.policy import syntax_error

    try:
        code = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return ExecutionResult.rejected(Violation(line, 0, "encoding", "not UTF-8 text")).to_dict()
    problem = syntax_error(code)
    return code if problem is None else ExecutionResult.rejected(problem).to_dict()


def prepare_docker(settings: Settings) -> None:
    """Docker reachable, image built (one clear line otherwise); containers of crashed
    owners swept."""
    from tasks.sandbox.docker_runtime import DockerRuntime

    runtime = DockerRuntime(image=settings.sandbox_image, runtime=settings.sandbox_runtime)
    runtime.check()
    runtime.sweep()


def _shown(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result.get(key) for key in SANDBOX_KEYS}

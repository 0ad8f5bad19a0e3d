"""Fetch, verify and unpack the relevance benchmark's corpus (``repos.toml``).

Each project is one pinned archive from a registry: a PyPI sdist (the JSON API), a crate
(static.crates.io) or a Debian package (``apt-get download``). Its SHA-256 must match the
pin; then the ``include`` folders are copied into ``CACHE/<name>/tree`` and that tree is
made a git repository with one commit, which is what codeflow indexes. Archives and trees
are kept under the cache folder, so later runs need no network.

    .venv/bin/python -m benchmarks.relevance.corpus [--cache DIR]   # fetch everything
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.git_support import commit_all, git

HERE = Path(__file__).parent
DEFAULT_CACHE = Path.home() / ".cache" / "codeflow-bench" / "relevance"
_TIMEOUT_S = 120


@dataclass(frozen=True)
class Project:
    name: str
    language: str
    source: str
    package: str
    version: str
    sha256: str
    include: tuple[tuple[str, str], ...]


def projects() -> list[Project]:
    """The corpus as ``repos.toml`` pins it, in file order."""
    table = tomllib.loads((HERE / "repos.toml").read_text())
    return [
        Project(name, spec["language"], spec["source"], spec["package"], spec["version"],
                spec["sha256"], tuple((a, b) for a, b in spec["include"]))
        for name, spec in table.items()
    ]  # fmt: skip


def repository(project: Project, cache: Path = DEFAULT_CACHE) -> Path:
    """The project's git repository, fetched and unpacked first if needed."""
    tree = cache / project.name / "tree"
    if (tree / ".git").is_dir():
        return tree
    archive = _archive(project, cache / project.name)
    if tree.exists():
        shutil.rmtree(tree)
    _unpack(project, archive, tree)
    git(tree, "init", "-q")
    commit_all(tree, f"{project.package} {project.version}")
    return tree


def _archive(project: Project, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{project.package}-{project.version}.archive"
    if not target.exists() or _sha256(target) != project.sha256:
        data = _download(project, folder)
        if hashlib.sha256(data).hexdigest() != project.sha256:
            raise SystemExit(
                f"{project.name}: the downloaded archive's SHA-256 differs from the pin"
            )
        target.write_bytes(data)
    return target


def _download(project: Project, folder: Path) -> bytes:
    if project.source == "pypi":
        return _get(_sdist_url(project.package, project.version))
    if project.source == "crate":
        name, version = project.package, project.version
        return _get(f"https://static.crates.io/crates/{name}/{name}-{version}.crate")
    if project.source == "debian":
        return _apt_download(project, folder)
    raise SystemExit(f"{project.name}: unknown source {project.source!r}")


def _sdist_url(package: str, version: str) -> str:
    index = f"https://pypi.org/pypi/{package}/json"
    for entry in json.loads(_get(index))["releases"].get(version, []):
        if entry["packagetype"] == "sdist":
            return urllib.parse.urljoin(index, str(entry["url"]))
    raise SystemExit(f"{package} {version} has no sdist on PyPI")


def _apt_download(project: Project, folder: Path) -> bytes:
    spec = f"{project.package}={project.version}"
    done = subprocess.run(
        ["apt-get", "download", spec], cwd=folder, capture_output=True, text=True, check=False
    )
    found = sorted(folder.glob(f"{project.package}_*.deb"))
    if done.returncode != 0 or not found:
        raise SystemExit(f"{project.name}: apt-get download {spec} failed: {done.stderr.strip()}")
    data = found[-1].read_bytes()
    found[-1].unlink()
    return data


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        return bytes(response.read())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unpack(project: Project, archive: Path, tree: Path) -> None:
    staging = tree.with_name("staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if project.source == "debian":
        subprocess.run(["dpkg-deb", "-x", str(archive), str(staging)], check=True)
    else:
        with tarfile.open(fileobj=io.BytesIO(archive.read_bytes()), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
    for source, dest in project.include:
        if (staging / source).is_file():
            (tree / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staging / source, tree / dest)
        else:
            shutil.copytree(staging / source, tree / dest, symlinks=False, dirs_exist_ok=True)
    shutil.rmtree(staging)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relevance.corpus")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    for project in projects():
        tree = repository(project, args.cache)
        files = sum(1 for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts)
        print(f"{project.name:16} {project.language:11} {files:5} files  {tree}")


if __name__ == "__main__":
    main()

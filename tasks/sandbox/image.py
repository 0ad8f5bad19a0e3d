"""Build the sandbox's Python base image offline, from Debian packages.

No registry is reachable here, so nothing can be pulled. ``build_image`` runs
``debootstrap --variant=minbase --include=python3`` against the machine's own apt mirror,
hardens the tree (no setuid/setgid bits, no package caches or docs, a non-root ``sandbox``
user), packs it as a tarball and ``docker import``s it with USER/ENV/WORKDIR re-applied.

The image is tagged by a hash of this recipe (``codeflow-sandbox:<hash>``) and also
``:latest``; when the hashed tag exists the build is skipped, so calling it is cheap and
idempotent. The rootfs tarball is cached under ``cache_dir`` so a rebuild after
``docker rmi`` only re-imports (seconds instead of a minute).

>>> build_image(cache_dir=Path("~/.codeflow/sandbox").expanduser())  # doctest: +SKIP
'codeflow-sandbox:3f2a9c1d0b7e'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from config.errors import ConfigError, DockerUnavailable, SandboxError

SANDBOX_UID = 10001
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3",)
STRIP = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/log",
    "dev",
)
CHANGES = (
    f"USER {SANDBOX_UID}:{SANDBOX_UID}",
    "WORKDIR /tmp",
    "ENV PATH=/usr/local/bin:/usr/bin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV HOME=/tmp",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "ENV PYTHONUNBUFFERED=1",
    'CMD ["python3"]',
)
RECIPE_VERSION = 3  # bump when harden_rootfs() changes what it does
RECIPE: dict[str, object] = {
    "version": RECIPE_VERSION,
    "suite": SUITE,
    "variant": VARIANT,
    "include": INCLUDE,
    "uid": SANDBOX_UID,
    "strip": STRIP,
    "changes": CHANGES,
}

Progress = Callable[[str], None]


def recipe_hash() -> str:
    """Content hash of the build recipe: the image tag, so a changed recipe rebuilds."""
    blob = json.dumps(RECIPE, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def build_image(
    name: str = "codeflow-sandbox",
    *,
    mirror: str | None = None,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    client: docker.DockerClient | None = None,
) -> str:
    """Build (or find) the sandbox image and return its content tag ``name:<hash>``.

    ``mirror`` defaults to the first Debian mirror in the machine's apt sources;
    ``cache_dir`` keeps the rootfs tarball between builds (a temporary directory if None).
    Raises :class:`DockerUnavailable` when the engine can't be reached and
    :class:`SandboxError` when debootstrap is missing or fails.
    """
    say = progress or (lambda _msg: None)
    docker_client = client or _connect()
    tag = f"{name}:{recipe_hash()}"
    try:
        docker_client.images.get(tag)
        say(f"image {tag} is up to date")
    except ImageNotFound:
        _build(docker_client, name, mirror, cache_dir, say)
        _prune_old_builds(docker_client, name, tag)
    except DockerException as exc:
        raise DockerUnavailable(f"Docker engine unreachable ({exc}); start Docker") from exc
    docker_client.images.get(tag).tag(name, "latest")
    return tag


def _connect() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=DEFAULT_DOCKER_URL)
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(f"Docker engine unreachable ({exc}); start Docker") from exc
    return client


def _build(
    client: docker.DockerClient,
    name: str,
    mirror: str | None,
    cache_dir: Path | None,
    say: Progress,
) -> None:
    with tempfile.TemporaryDirectory(prefix="codeflow-sandbox-") as scratch:
        directory = cache_dir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        tarball = directory / f"rootfs-{recipe_hash()}.tar"
        if tarball.exists():
            say(f"reusing cached root filesystem {tarball}")
        else:
            _make_tarball(tarball, mirror or find_mirror(), say)
        say("importing the root filesystem into Docker")
        client.api.import_image(
            src=str(tarball),
            repository=name,
            tag=recipe_hash(),
            changes=list(CHANGES),
        )


def _prune_old_builds(client: docker.DockerClient, name: str, keep: str) -> None:
    """Untag images of earlier recipes (``name:<12 hex>``); ones still in use stay."""
    for image in client.images.list(name=name):
        for old in image.tags:
            if old != keep and re.fullmatch(re.escape(name) + r":[0-9a-f]{12}", old):
                with contextlib.suppress(DockerException):
                    client.images.remove(old)


def _make_tarball(tarball: Path, mirror: str, say: Progress) -> None:
    """debootstrap into a scratch dir next to ``tarball``, harden, pack, rename atomically."""
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed; run: apt-get install -y debootstrap")
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    try:
        say(f"debootstrap {SUITE} from {mirror} (about a minute)")
        _debootstrap(rootfs, mirror)
        say("hardening the root filesystem")
        harden_rootfs(rootfs)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.replace(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _debootstrap(rootfs: Path, mirror: str) -> None:
    include = ",".join(INCLUDE)
    _run(
        [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={include}",
            SUITE,
            str(rootfs),
            mirror,
        ]
    )


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SandboxError(f"{argv[0]} failed (exit {result.returncode}): {' | '.join(tail)}")


def harden_rootfs(rootfs: Path) -> None:
    """Drop caches and docs, strip setuid/setgid bits, add the unprivileged user and `python`."""
    for relative in STRIP:
        target = rootfs / relative
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            target.mkdir(mode=0o755)
    strip_setid_bits(rootfs)
    _add_user(rootfs)
    python = rootfs / "usr/bin/python"
    if not python.exists() and not python.is_symlink():
        python.symlink_to("python3")  # tools (and peers) that call `python`


def strip_setid_bits(rootfs: Path) -> list[Path]:
    """Clear setuid/setgid on every file and directory under ``rootfs``; return what changed."""
    changed = []
    for directory, dirs, files in os.walk(rootfs):
        for filename in [*dirs, *files]:
            path = Path(directory, filename)
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                path.chmod(stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
                changed.append(path)
    return changed


def _add_user(rootfs: Path) -> None:
    uid = SANDBOX_UID
    with (rootfs / "etc/passwd").open("a") as passwd:
        passwd.write(f"sandbox:x:{uid}:{uid}:codeflow sandbox:/tmp:/usr/sbin/nologin\n")
    with (rootfs / "etc/group").open("a") as group:
        group.write(f"sandbox:x:{uid}:\n")


def find_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The first Debian (non-security) mirror named in the machine's apt sources."""
    candidates = _deb822_uris(apt_dir) + _one_line_uris(apt_dir)
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise ConfigError(f"no Debian mirror found in {apt_dir}/sources.list*; pass mirror=URL")


def _deb822_uris(apt_dir: Path) -> list[str]:
    uris = []
    for source in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for line in source.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                uris.extend(line.split(":", 1)[1].split())
    return uris


def _one_line_uris(apt_dir: Path) -> list[str]:
    files = [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]
    uris = []
    for path in files:
        if path.exists():
            text = path.read_text(errors="replace")
            uris.extend(re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE))
    return uris

"""GitRepository against real git repositories built in tmp_path with the git CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.errors import RepositoryError
from tasks.index.changes import blob_sha, diff_manifests
from tasks.repo.git_repository import SKIP_REASONS, GitRepository

# Isolate from the machine's git configuration (default branch, hooks, templates, signing).
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "PATH": os.defpath + os.pathsep + os.path.dirname(shutil.which("git") or "/usr/bin/git"),
    "HOME": tempfile.gettempdir(),
}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def init_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "codeflow tests")
    git(root, "config", "user.email", "tests@codeflow.invalid")
    git(root, "config", "commit.gpgsign", "false")
    return root


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def commit_all(root: Path, message: str = "commit") -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def head_tree(root: Path) -> dict[str, str]:
    """Regular files of HEAD as git itself lists them: path -> blob SHA."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-tree", "-r", "-z", "HEAD"],
        env=GIT_ENV, check=True, capture_output=True,
    ).stdout  # fmt: skip
    tree = {}
    for record in filter(None, out.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        mode, _kind, sha = meta.decode().split()
        if mode in ("100644", "100755"):
            tree[path.decode()] = sha
    return tree


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo")
    write(root, "README.md", "# demo\n")
    write(root, "src/app.py", "def main():\n    return 1\n")
    write(root, "src/util/helpers.py", "X = 1\n")
    write(root, "dir with space/naïve 文件.py", "print('héllo')\n")
    write(root, 'quote\'s "name".py', "Q = 1\n")
    commit_all(root, "initial")
    return root


@pytest.fixture
def repo(repo_dir: Path) -> Iterator[GitRepository]:
    with GitRepository.open(repo_dir) as opened:
        yield opened


# --- opening --------------------------------------------------------------------------


def test_clean_repository_manifest_equals_heads_tree(repo: GitRepository, repo_dir: Path) -> None:
    fp = repo.fingerprint()
    assert fp.files == head_tree(repo_dir)
    assert fp.dirty == [] and fp.skipped == {}
    assert fp.head == git(repo_dir, "rev-parse", "HEAD")
    assert fp.branch == "main"
    assert fp.root == str(repo_dir.resolve())
    assert len(fp.repo_id) == 16
    with GitRepository.open(repo_dir) as again:
        assert again.fingerprint().repo_id == fp.repo_id


def test_subfolder_resolves_to_the_top_level(repo_dir: Path) -> None:
    with GitRepository.open(repo_dir / "src" / "util") as repo:
        assert repo.root == repo_dir.resolve()
        assert "README.md" in repo.fingerprint().files


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="no such directory"):
        GitRepository.open(tmp_path / "nope")


def test_path_is_a_file(repo_dir: Path) -> None:
    with pytest.raises(RepositoryError, match="not a directory"):
        GitRepository.open(repo_dir / "README.md")


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepositoryError, match="not a git repository") as info:
        GitRepository.open(plain)
    assert "\n" not in str(info.value)


def test_empty_repository_asks_for_a_first_commit(tmp_path: Path) -> None:
    root = init_repo(tmp_path / "empty")
    write(root, "a.py", "A = 1\n")
    with pytest.raises(RepositoryError, match="no commits yet; make a first commit"):
        GitRepository.open(root)


def test_bare_repository_is_refused(tmp_path: Path, repo_dir: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(bare))
    with pytest.raises(RepositoryError, match="bare repository"):
        GitRepository.open(bare)


# --- working-tree state ---------------------------------------------------------------


def test_dirty_edits_hash_the_working_tree(repo: GitRepository, repo_dir: Path) -> None:
    write(repo_dir, "src/app.py", "def main():\n    return 2\n")
    write(repo_dir, "README.md", "# staged edit\n")
    git(repo_dir, "add", "README.md")
    write(repo_dir, "README.md", "# staged, then edited again\n")
    fp = repo.fingerprint()
    assert fp.files["src/app.py"] == blob_sha(b"def main():\n    return 2\n")
    assert fp.files["README.md"] == blob_sha(b"# staged, then edited again\n")
    assert fp.files["src/app.py"] == git(repo_dir, "hash-object", "src/app.py")
    assert fp.dirty == ["README.md", "src/app.py"]
    changes = diff_manifests(head_tree(repo_dir), fp.files)
    assert changes.modified == ["README.md", "src/app.py"]


def test_every_manifest_sha_matches_the_bytes_read(repo: GitRepository, repo_dir: Path) -> None:
    write(repo_dir, "src/app.py", "changed = True\n")
    write(repo_dir, "new/untracked.py", "U = 1\n")
    fp = repo.fingerprint()
    contents, skipped = repo.read_files(sorted(fp.files), max_bytes=1 << 20)
    assert skipped == {}
    assert {path: blob_sha(data) for path, data in contents.items()} == fp.files


def test_untracked_files_are_included_and_gitignored_ones_are_not(
    repo: GitRepository, repo_dir: Path
) -> None:
    write(repo_dir, ".gitignore", "build/\n*.log\n")
    write(repo_dir, "tracked.log", "kept: tracked before the rule\n")
    git(repo_dir, "add", "-f", "tracked.log")
    write(repo_dir, "build/out.py", "generated\n")
    write(repo_dir, "debug.log", "noise\n")
    write(repo_dir, "deep/new dir/new.py", "N = 1\n")
    fp = repo.fingerprint()
    assert "deep/new dir/new.py" in fp.files and "deep/new dir/new.py" in fp.dirty
    assert ".gitignore" in fp.files
    assert "tracked.log" in fp.files
    assert "build/out.py" not in fp.files and "debug.log" not in fp.files
    assert not {"build/out.py", "debug.log"} & fp.skipped.keys()


def test_codeflowignore_drops_tracked_and_untracked_paths(
    repo: GitRepository, repo_dir: Path
) -> None:
    write(repo_dir, ".codeflowignore", "vendor/\n*.min.js\n!keep.min.js\n")
    write(repo_dir, "vendor/lib/big.py", "V = 1\n")
    write(repo_dir, "static/app.min.js", "x\n")
    write(repo_dir, "keep.min.js", "k\n")
    commit_all(repo_dir, "vendored")
    write(repo_dir, "vendor/untracked.py", "U = 1\n")
    write(repo_dir, "other.min.js", "o\n")
    fp = repo.fingerprint()
    for path in ("vendor/lib/big.py", "static/app.min.js", "vendor/untracked.py", "other.min.js"):
        assert fp.skipped.get(path) == "ignored-by-codeflowignore", path
        assert path not in fp.files
    assert "keep.min.js" in fp.files
    assert "vendor/untracked.py" not in fp.dirty
    assert "vendor/lib/big.py" in repo.fingerprint(ignore_file="no-such-file").files


def test_ignore_file_outside_the_repository_is_refused(repo: GitRepository) -> None:
    with pytest.raises(RepositoryError, match="repo-relative"):
        repo.fingerprint(ignore_file="../escape")


def test_deleted_files_leave_the_manifest(repo: GitRepository, repo_dir: Path) -> None:
    (repo_dir / "src/app.py").unlink()  # no `git rm`
    git(repo_dir, "rm", "-q", "README.md")
    fp = repo.fingerprint()
    assert "src/app.py" not in fp.files and "README.md" not in fp.files
    assert fp.dirty == ["README.md", "src/app.py"]
    assert diff_manifests(head_tree(repo_dir), fp.files).deleted == ["README.md", "src/app.py"]


@pytest.mark.parametrize("staged", [True, False])
def test_renames_are_detected_by_content(repo: GitRepository, repo_dir: Path, staged: bool) -> None:
    if staged:
        git(repo_dir, "mv", "src/util/helpers.py", "src/helpers_moved.py")
    else:
        (repo_dir / "src/util/helpers.py").rename(repo_dir / "src/helpers_moved.py")
    fp = repo.fingerprint()
    changes = diff_manifests(head_tree(repo_dir), fp.files)
    assert changes.renamed == [("src/util/helpers.py", "src/helpers_moved.py")]
    assert (changes.added, changes.deleted, changes.modified) == ([], [], [])
    assert fp.dirty == ["src/helpers_moved.py", "src/util/helpers.py"]


def test_detached_head_has_no_branch(repo: GitRepository, repo_dir: Path) -> None:
    first = git(repo_dir, "rev-parse", "HEAD")
    write(repo_dir, "second.py", "S = 2\n")
    commit_all(repo_dir, "second")
    git(repo_dir, "checkout", "-q", "--detach", first)
    fp = repo.fingerprint()
    assert fp.branch is None
    assert fp.head == first
    assert "second.py" not in fp.files


def test_branch_names_with_slashes(repo: GitRepository, repo_dir: Path) -> None:
    git(repo_dir, "checkout", "-q", "-b", "feature/search")
    assert repo.fingerprint().branch == "feature/search"


def test_names_with_spaces_quotes_and_non_ascii(repo: GitRepository, repo_dir: Path) -> None:
    write(repo_dir, "dir with space/naïve 文件.py", "print('changed')\n")
    write(repo_dir, "new ünïcödé/ta\tb.py", "T = 1\n")
    fp = repo.fingerprint()
    assert fp.files["dir with space/naïve 文件.py"] == blob_sha(b"print('changed')\n")
    assert fp.files['quote\'s "name".py'] == blob_sha(b"Q = 1\n")
    assert "new ünïcödé/ta\tb.py" in fp.files
    assert repo.read_file("new ünïcödé/ta\tb.py") == b"T = 1\n"
    json.dumps(fp.files)  # manifests are stored as JSON


def test_non_utf8_file_names_are_skipped_and_reported(repo: GitRepository, repo_dir: Path) -> None:
    fd = os.open(os.fsencode(repo_dir) + b"/latin1-\xe9.py", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    fp = repo.fingerprint()
    assert fp.skipped == {"latin1-\\xe9.py": "non-utf8-name"}
    json.dumps(fp.skipped)


# --- things that are not regular files --------------------------------------------------


def test_submodules_are_skipped_and_reported(tmp_path: Path, repo_dir: Path) -> None:
    library = init_repo(tmp_path / "library")
    write(library, "lib.py", "L = 1\n")
    commit_all(library)
    git(
        repo_dir,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(library),
        "ext/lib",
    )
    commit_all(repo_dir, "add submodule")
    write(repo_dir, "ext/lib/lib.py", "L = 2  # dirty inside the submodule\n")
    nested = init_repo(repo_dir / "nested")  # an untracked repository inside the work tree
    write(nested, "inner.py", "I = 1\n")
    with GitRepository.open(repo_dir) as repo:
        fp = repo.fingerprint()
    assert fp.skipped["ext/lib"] == "submodule"
    assert fp.skipped["nested"] == "submodule"
    assert not any(p.startswith(("ext/lib/", "nested/")) for p in fp.files)
    assert ".gitmodules" in fp.files
    assert fp.dirty == []


def test_symlinks_are_never_followed(repo: GitRepository, repo_dir: Path) -> None:
    os.symlink("/etc/passwd", repo_dir / "passwd-link")
    os.symlink("src", repo_dir / "src-link")
    commit_all(repo_dir, "tracked links")
    os.symlink("/etc", repo_dir / "etc-link")  # untracked link to a directory
    os.symlink("../README.md", repo_dir / "src/readme-link")  # untracked, inside the repo
    fp = repo.fingerprint()
    for link in ("passwd-link", "src-link", "etc-link", "src/readme-link"):
        assert fp.skipped[link] == "symlink", link
    assert not any(p.startswith(("src-link", "etc-link", "passwd")) for p in fp.files)
    assert "src/app.py" in fp.files
    for path in ("passwd-link", "src-link/app.py", "etc-link/passwd", "src/readme-link"):
        with pytest.raises(RepositoryError, match="symlink"):
            repo.read_file(path)
    _, skipped = repo.read_files(["passwd-link", "src-link/app.py"], max_bytes=1000)
    assert skipped == {"passwd-link": "symlink", "src-link/app.py": "symlink"}


def test_a_tracked_file_replaced_by_a_symlink_is_skipped(
    repo: GitRepository, repo_dir: Path
) -> None:
    (repo_dir / "src/app.py").unlink()
    os.symlink("/etc/passwd", repo_dir / "src/app.py")
    fp = repo.fingerprint()
    assert fp.skipped["src/app.py"] == "symlink"
    assert "src/app.py" not in fp.files


def test_fifo_is_not_read_and_does_not_block(repo: GitRepository, repo_dir: Path) -> None:
    os.mkfifo(repo_dir / "pipe")
    contents, skipped = repo.read_files(["pipe", "README.md"], max_bytes=1000)
    assert skipped == {"pipe": "not-a-regular-file"}
    assert contents == {"README.md": b"# demo\n"}
    assert "pipe" not in repo.fingerprint().files


# --- safe reading -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["../outside.py", "/etc/passwd", "src/../README.md", "", "./README.md", ".git/config",
            "src//app.py", "nul\0byte"],
)  # fmt: skip
def test_read_file_refuses_paths_that_escape(repo: GitRepository, bad: str) -> None:
    with pytest.raises(RepositoryError, match="invalid-path"):
        repo.read_file(bad)


def test_read_files_reports_each_bad_path_without_raising(
    repo: GitRepository, repo_dir: Path
) -> None:
    contents, skipped = repo.read_files(
        ["src/app.py", "missing.py", "src", "../x", "README.md/child"], max_bytes=1 << 20
    )
    assert contents == {"src/app.py": b"def main():\n    return 1\n"}
    assert skipped == {
        "missing.py": "vanished",
        "src": "not-a-regular-file",
        "../x": "invalid-path",
        "README.md/child": "not-a-regular-file",
    }
    assert set(skipped.values()) <= SKIP_REASONS


def _bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_oversized_file_is_skipped_without_being_read(repo: GitRepository, repo_dir: Path) -> None:
    with (repo_dir / "huge.bin").open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB long, no disk used
    before = _bytes_read_by_this_process()
    contents, skipped = repo.read_files(["huge.bin", "README.md"], max_bytes=1 << 20)
    read = _bytes_read_by_this_process() - before
    assert skipped == {"huge.bin": "oversized"}
    assert contents == {"README.md": b"# demo\n"}
    assert read < 64 * 1024, f"read {read} bytes to skip an oversized file"
    assert repo.read_file("README.md", max_bytes=7) == b"# demo\n"
    with pytest.raises(RepositoryError, match="oversized"):
        repo.read_file("README.md", max_bytes=6)


_READ_SKIPPED = """
import json, sys
from tasks.repo.git_repository import GitRepository
with GitRepository.open(sys.argv[1]) as repo:
    print(json.dumps(repo.read_files(["secret.py", "open.py"], max_bytes=1000)[1]))
"""


def test_unreadable_file_is_reported(repo_dir: Path) -> None:
    """Root reads a chmod-000 file anyway, so as root the reader runs without the
    capabilities that let root bypass file permissions (setpriv drops them)."""
    write(repo_dir, "open.py", "O = 1\n")
    write(repo_dir, "secret.py", "S = 1\n").chmod(0o000)
    command = [sys.executable, "-c", _READ_SKIPPED, str(repo_dir)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and util-linux's setpriv is missing")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    project = Path(__file__).parents[2]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=project,
        env={**GIT_ENV, "PYTHONPATH": str(project)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"secret.py": "unreadable"}


# --- history ----------------------------------------------------------------------------


def test_history_connects_along_a_branch(repo: GitRepository, repo_dir: Path) -> None:
    first = git(repo_dir, "rev-parse", "HEAD")
    write(repo_dir, "b.py", "B = 1\n")
    second = commit_all(repo_dir, "second")
    assert repo.history_connects(first, second)
    assert repo.history_connects(second, second)
    assert not repo.history_connects(second, first)


def test_history_does_not_connect_after_amend_or_orphan(
    repo: GitRepository, repo_dir: Path
) -> None:
    write(repo_dir, "b.py", "B = 1\n")
    before_amend = commit_all(repo_dir, "to be amended")
    git(repo_dir, "commit", "-q", "--amend", "-m", "rewritten")
    after_amend = git(repo_dir, "rev-parse", "HEAD")
    assert not repo.history_connects(before_amend, after_amend)
    git(repo_dir, "checkout", "-q", "--orphan", "fresh")
    orphan = commit_all(repo_dir, "orphan root")
    assert not repo.history_connects(after_amend, orphan)


@pytest.mark.parametrize("bad", ["0" * 40, "deadbeef", "--help", "HEAD", "", "main"])
def test_history_connects_is_false_for_unknown_or_malformed_ids(
    repo: GitRepository, bad: str
) -> None:
    head = repo.fingerprint().head
    assert head is not None
    assert not repo.history_connects(bad, head)
    assert not repo.history_connects(head, bad)


def test_history_connects_is_false_beyond_a_shallow_clone(tmp_path: Path, repo_dir: Path) -> None:
    first = git(repo_dir, "rev-parse", "HEAD")
    write(repo_dir, "b.py", "B = 1\n")
    commit_all(repo_dir, "second")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo_dir}", str(shallow))
    with GitRepository.open(shallow) as repo:
        fp = repo.fingerprint()
        assert fp.files == head_tree(repo_dir)
        assert fp.head is not None
        assert not repo.history_connects(first, fp.head)


def test_a_tracked_folder_replaced_by_a_symlink_is_not_followed(
    repo: GitRepository, repo_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "helpers.py", "OUTSIDE = 1\n")
    shutil.rmtree(repo_dir / "src/util")
    os.symlink(elsewhere, repo_dir / "src/util")
    fp = repo.fingerprint()
    assert "src/util/helpers.py" not in fp.files
    assert fp.skipped["src/util"] == "symlink"
    with pytest.raises(RepositoryError, match="symlink"):
        repo.read_file("src/util/helpers.py")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository away")
def test_a_repository_owned_by_someone_else_fails_with_one_clear_line(repo_dir: Path) -> None:
    trusted = subprocess.run(
        ["git", "config", "--get-all", "safe.directory"], capture_output=True, text=True
    ).stdout
    if trusted.strip():
        pytest.skip(f"this machine's git config trusts other owners: {trusted.split()}")
    for path in [repo_dir, *repo_dir.rglob("*")]:
        os.lchown(path, 65534, 65534)
    with GitRepository.open(repo_dir) as repo, pytest.raises(RepositoryError) as info:
        repo.fingerprint()
    message = str(info.value)
    assert "dubious ownership" in message and "safe.directory" in message
    assert "\n" not in message


def test_blob_shas_are_gits_own_when_filters_apply(repo: GitRepository, repo_dir: Path) -> None:
    """With autocrlf, git stores LF blobs: a dirty file hashes like git would store it, so
    reverting an edit gives back HEAD's SHA (sha1 of the raw CRLF bytes would not)."""
    git(repo_dir, "config", "core.autocrlf", "true")
    write(repo_dir, "crlf.txt", b"one\r\ntwo\r\n")
    commit_all(repo_dir, "crlf")
    committed = head_tree(repo_dir)["crlf.txt"]
    assert committed == blob_sha(b"one\ntwo\n")
    write(repo_dir, "crlf.txt", b"one\r\nTWO\r\n")
    assert repo.fingerprint().files["crlf.txt"] == blob_sha(b"one\nTWO\n")
    write(repo_dir, "crlf.txt", b"one\r\ntwo\r\n")
    assert repo.fingerprint().files["crlf.txt"] == committed

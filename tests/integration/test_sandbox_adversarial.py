"""Hostile code against the real engine and image: the container alone must contain it.

Every test asserts both what the runtime reported (status) and that the host is unharmed:
the run's container is gone, no process of it survives on the host (by cgroup and by the
sandbox uid), and canary paths the code tried to write do not exist on the host. The AST
policy is NOT applied here (DockerRuntime never applies it): the classic filter bypasses
at the end run with that layer off, and the same sources are checked to be reported as
violations when it is on.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import docker
import pytest

from tasks.sandbox.docker_runtime import DockerRuntime
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits
from tasks.sandbox.policy import check_code
from tests.integration import sandbox_fixtures as fixtures
from tests.integration.sandbox_fixtures import host_unharmed

docker_client = fixtures.docker_client
sandbox_image = fixtures.sandbox_image
host_guard = fixtures.host_guard


@pytest.fixture(scope="module", params=["runc", "runsc"])
def runtime(
    request: pytest.FixtureRequest, docker_client: docker.DockerClient, sandbox_image: str
) -> DockerRuntime:
    """Every hostile program runs under Docker's runtime and under gVisor."""
    return fixtures.runtime_for(request.param, docker_client, sandbox_image)


pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("host_guard")]
SHORT = Limits(timeout_s=2)


def run(sandbox: DockerRuntime, code: str, limits: Limits = SHORT) -> ExecutionResult:
    result = sandbox.run(ExecutionRequest(code, limits=limits))
    assert result.duration_s < limits.timeout_s + sandbox.grace_s + 5
    return result


@pytest.fixture
def canary() -> str:
    return f"codeflow-canary-{uuid.uuid4().hex}"


def canary_paths(name: str) -> list[Path]:
    return [Path("/", name), Path("/tmp", name), Path("/var/tmp", name), Path.home() / name]


# --- resource exhaustion ---------------------------------------------------------------


def test_fork_bomb(runtime: DockerRuntime, docker_client: docker.DockerClient) -> None:
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    result = run(runtime, code)
    # runc: the pid limit stops the forks, the clock ends the loop; gVisor's kernel may end
    # the bomb itself first (its tasks are not host processes)
    assert result.status == "timeout" if runtime.runtime == "runc" else result.status != "ok"
    host_unharmed(docker_client, result.container_id)


def test_memory_bomb(runtime: DockerRuntime, docker_client: docker.DockerClient) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(b'x' * 10_000_000)\n"
    result = run(runtime, code, Limits(timeout_s=10, memory_mb=128))
    assert (result.status, result.exit_code) == ("oom", 137)
    host_unharmed(docker_client, result.container_id)


def test_filling_tmp_and_writing_to_root(
    runtime: DockerRuntime, docker_client: docker.DockerClient, canary: str
) -> None:
    code = f"""
import errno
try:
    with open('/tmp/fill', 'wb') as f:
        while True:
            f.write(b'x' * 1_000_000)
except OSError as exc:
    print('tmp full', errno.errorcode[exc.errno])
for path in ['/{canary}', '/etc/{canary}', '/usr/bin/{canary}', '/var/tmp/{canary}']:
    try:
        open(path, 'w').write('pwned')
        print('WROTE', path)
    except OSError as exc:
        print('refused', path, errno.errorcode[exc.errno])
open('/tmp/{canary}', 'w').write('inside only')
print('tmp canary written')
"""
    result = run(runtime, code, Limits(timeout_s=10, tmpfs_mb=16))
    assert result.status == "ok", result.stderr
    assert result.stdout.startswith("tmp full")
    assert "WROTE" not in result.stdout
    assert result.stdout.count("refused") == 4 and "tmp canary written" in result.stdout
    host_unharmed(docker_client, result.container_id, *canary_paths(canary))


def test_output_flood(runtime: DockerRuntime, docker_client: docker.DockerClient) -> None:
    code = (
        "import sys\n"
        "while True:\n    sys.stdout.write('x' * 65536)\n    sys.stderr.write('y' * 4096)\n"
    )
    limits = Limits(timeout_s=10, output_bytes=100_000)
    result = run(runtime, code, limits)
    assert result.status == "output_limit" and result.truncated
    assert len(result.stdout) == 100_000 and len(result.stderr) <= 100_000
    assert result.duration_s < 5, "the flood should be killed, not waited out"
    host_unharmed(docker_client, result.container_id)


@pytest.mark.parametrize(
    "code",
    [
        "while True:\n    pass\n",
        "import time\ntime.sleep(3600)\n",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)\n",
    ],
    ids=["infinite-loop", "sleep-past-timeout", "ignore-sigterm"],
)
def test_timeouts(runtime: DockerRuntime, docker_client: docker.DockerClient, code: str) -> None:
    result = run(runtime, code)
    assert (result.status, result.exit_code, result.timed_out) == ("timeout", 137, True)
    assert result.duration_s >= SHORT.timeout_s
    host_unharmed(docker_client, result.container_id)


def test_background_process_outliving_the_main_one(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = """
import os, subprocess, time
subprocess.Popen(['sleep', '3600'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    while True:
        time.sleep(1)
print('main done', flush=True)
"""
    result = run(runtime, code, Limits(timeout_s=20))
    assert (result.status, result.stdout) == ("ok", "main done\n")
    assert result.duration_s < 10, "the run must not wait for its orphans"
    host_unharmed(docker_client, result.container_id)


def test_zombie_factory(runtime: DockerRuntime, docker_client: docker.DockerClient) -> None:
    code = """
import os, time
children = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            os._exit(0)
        children += 1
    except OSError:
        break
time.sleep(0.3)
pids = [p for p in os.listdir('/proc') if p.isdigit()]
states = [open(f'/proc/{p}/stat').read().split(') ')[1][0] for p in pids]
print(children, states.count('Z'))
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", (result.exit_code, result.stdout, result.stderr)
    children, zombies = map(int, result.stdout.split())
    assert zombies > 0
    if runtime.runtime == "runc":  # under gVisor the program's processes are its kernel's
        # tasks, bounded by the memory limit; the host pid limit bounds gVisor's threads
        assert 0 < children < 64, "the pid limit caps the factory"
    host_unharmed(docker_client, result.container_id)


# --- network and secrets ---------------------------------------------------------------


def test_network_egress_by_tcp_dns_and_http(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = """
import os, socket, urllib.request
def attempt(name, action):
    try:
        action()
        print('LEAK', name)
    except Exception as exc:
        print('blocked', name, type(exc).__name__)
attempt('tcp', lambda: socket.create_connection(('1.1.1.1', 53), timeout=1))
attempt('tcp-bridge', lambda: socket.create_connection(('172.17.0.1', 2375), timeout=1))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
attempt('udp', lambda: udp.sendto(b'x', ('8.8.8.8', 53)))
attempt('dns', lambda: socket.getaddrinfo('deb.debian.org', 80))
attempt('http', lambda: urllib.request.urlopen('http://deb.debian.org/', timeout=1))
print('interfaces', sorted(os.listdir('/sys/class/net')))
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    assert "LEAK" not in result.stdout
    assert result.stdout.count("blocked") == 5
    assert "interfaces ['lo']" in result.stdout
    host_unharmed(docker_client, result.container_id)


def test_host_environment_and_docker_socket_are_out_of_reach(
    runtime: DockerRuntime, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("CODEFLOW_SANDBOX_CANARY_SECRET", secret)
    code = """
import os, socket
dump = [repr(dict(os.environ))]
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    for name in ('environ', 'cmdline'):
        try:
            dump.append(open(f'/proc/{pid}/{name}', 'rb').read().decode(errors='replace'))
        except OSError as exc:
            dump.append(f'{pid}/{name}: {exc.errno}')
print('\\n'.join(dump))
for path in ('/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock'):
    print('socket', path, os.path.exists(path))
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('/var/run/docker.sock')
    print('LEAK docker socket')
except OSError as exc:
    print('docker socket refused', exc.errno)
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    assert secret not in result.stdout and secret not in result.stderr
    assert socket.gethostname() not in result.stdout.replace("sandbox", "")
    sockets = [line for line in result.stdout.splitlines() if line.startswith("socket ")]
    assert len(sockets) == 3 and all(line.endswith(" False") for line in sockets)
    assert "LEAK" not in result.stdout
    assert "docker socket refused" in result.stdout
    host_unharmed(docker_client, result.container_id)


# --- privilege ---------------------------------------------------------------------------


def test_setuid_mount_ptrace_unshare_all_fail(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = """
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(value):
    return ctypes.get_errno() if value == -1 else 0
out = {}
try:
    os.setuid(0)
    out['setuid'] = 0
except OSError as exc:
    out['setuid'] = exc.errno
out['mount'] = errno_of(libc.mount(b'none', b'/mnt', b'tmpfs', 0, None))
out['unshare-user'] = errno_of(libc.unshare(0x10000000))
out['unshare-mount'] = errno_of(libc.unshare(0x00020000))
out['ptrace-host-pid'] = errno_of(libc.ptrace(16, 999999, 0, 0))
out['visible-pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
commands = (['mount', '-t', 'tmpfs', 'none', '/mnt'], ['unshare', '-r', 'true'], ['su', '-c', 'id'])
for cmd in commands:
    out[cmd[0] + '-binary'] = subprocess.run(cmd, capture_output=True).returncode
print(json.dumps(out))
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    out = json.loads(result.stdout)
    assert out["setuid"] == 1  # EPERM
    assert out["mount"] == 1 and out["unshare-user"] == 1 and out["unshare-mount"] == 1
    assert out["ptrace-host-pid"] == 1  # EPERM: codeflow's seccomp profile refuses ptrace
    assert max(out["visible-pids"]) < 100, "only the sandbox's own processes are visible"
    assert out["mount-binary"] != 0 and out["unshare-binary"] != 0 and out["su-binary"] != 0
    host_unharmed(docker_client, result.container_id)


def test_ptrace_of_the_containers_init_is_refused(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    """Docker's default profile allows same-uid ptrace inside one container (attaching to
    the container's init would stop it); codeflow's profile refuses ptrace altogether."""
    code = "import ctypes\nprint(ctypes.CDLL(None).ptrace(16, 1, 0, 0), flush=True)\n"
    result = run(runtime, code)
    assert result.status == "ok" and result.stdout.strip() == "-1"
    host_unharmed(docker_client, result.container_id)


# --- what codeflow's seccomp profile and the engine refuse -----------------------------------

#: x86_64 numbers of calls reached through ``syscall(2)``.
SYSCALLS = {
    "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "setns": 308,
    "pivot_root": 155, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "io_uring_setup": 425, "open_by_handle_at": 304,
}  # fmt: skip


def test_dangerous_system_calls_are_refused(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    """Every call codeflow's profile removes from Docker's default fails (EPERM; gVisor may
    answer ENOSYS for calls its kernel does not implement), whatever its arguments."""
    code = f"""
import ctypes, json, os, time
libc = ctypes.CDLL(None, use_errno=True)
out = {{}}
for name, number in {SYSCALLS!r}.items():
    ctypes.set_errno(0)
    out[name] = (libc.syscall(number, 0, 0, 0, 0, 0), ctypes.get_errno())
child = os.fork()
if child == 0:
    time.sleep(2)
    os._exit(0)
out["ptrace-attach-child"] = (libc.ptrace(16, child, 0, 0), ctypes.get_errno())
os.kill(child, 9)
for flag, name in ((0x10000000, "user"), (0x40000000, "net"), (0x20000000, "pid")):
    ctypes.set_errno(0)
    out["unshare-" + name] = (libc.unshare(flag), ctypes.get_errno())
    out["clone-new-" + name] = (libc.syscall(56, flag | 17, 0, 0, 0, 0), ctypes.get_errno())
print(json.dumps(out))
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    for name, (returned, errno) in json.loads(result.stdout).items():
        assert returned == -1 and errno in (1, 38), f"{name} returned {returned} (errno {errno})"
    host_unharmed(docker_client, result.container_id)


def test_raw_and_packet_sockets_are_refused(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = """
import socket
for family, kind, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                            (socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
                            (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)):
    try:
        socket.socket(family, kind, proto)
        print("OPENED", family, kind)
    except OSError as exc:
        print("refused", exc.errno)
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    assert "OPENED" not in result.stdout and result.stdout.count("refused") == 3
    host_unharmed(docker_client, result.container_id)


def test_kernel_settings_cgroup_files_and_host_devices_are_out_of_reach(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = """
import os, stat
targets = ["/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger",
           "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max",
           "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max",
           "/dev/sda", "/dev/vda", "/dev/mem", "/dev/kmsg", "/dev/port"]
for path in targets:
    try:
        with open(path, "w") as handle:
            handle.write("1")
        print("WROTE", path)
    except OSError:
        pass
try:
    os.mknod("/tmp/disk", stat.S_IFBLK | 0o600, os.makedev(8, 0))
    print("made a device node")
    with open("/tmp/disk", "rb") as handle:
        print("READ", len(handle.read(512)))
except OSError:
    pass
print("done")
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    assert "WROTE" not in result.stdout and "READ" not in result.stdout
    # gVisor lets the node be made in its own kernel's tmpfs; it opens no host device
    assert ("made a device node" in result.stdout) == (runtime.runtime == "runsc")
    host_unharmed(docker_client, result.container_id)


def test_nothing_is_left_for_the_next_run(
    runtime: DockerRuntime, docker_client: docker.DockerClient, canary: str
) -> None:
    write = f"""
for path in ("/tmp/{canary}", "/tmp/work/{canary}", "/dev/shm/{canary}"):
    try:
        open(path, "w").write("left behind")
    except OSError:
        pass
"""
    first = run(runtime, write, Limits(timeout_s=10))
    look = f"""
import os
print([p for p in ("/tmp/{canary}", "/tmp/work/{canary}", "/dev/shm/{canary}")
       if os.path.exists(p)])
"""
    second = run(runtime, look, Limits(timeout_s=10))
    assert (first.status, second.status) == ("ok", "ok")
    assert second.stdout.strip() == "[]"
    host_unharmed(docker_client, second.container_id)


def test_thread_bomb(runtime: DockerRuntime, docker_client: docker.DockerClient) -> None:
    code = """
import threading, time
started = 0
try:
    for _ in range(100000):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        started += 1
except RuntimeError:
    pass
print(started, flush=True)
"""
    result = run(runtime, code, Limits(timeout_s=5))
    assert result.status in ("ok", "error", "oom", "timeout")
    if runtime.runtime == "runc" and result.status == "ok":
        assert int(result.stdout) < 64, "the pid limit caps the threads"
    host_unharmed(docker_client, result.container_id)


def test_filling_dev_shm_is_contained(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = """
written = 0
try:
    with open("/dev/shm/fill", "wb") as handle:
        while written < 1 << 30:
            handle.write(b"x" * (1 << 20))
            written += 1 << 20
except OSError as exc:
    print("stopped", exc.errno)
print(written >> 20)
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status in ("ok", "error", "oom"), result.stderr
    if result.status == "ok":
        assert int(result.stdout.split()[-1]) < 512, "the shm size and memory limit cap it"
    host_unharmed(docker_client, result.container_id)


def test_invalid_utf8_on_stdout_and_stderr_is_replaced(
    runtime: DockerRuntime, docker_client: docker.DockerClient
) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end')\n"
    code += "sys.stderr.buffer.write(b'\\xc3\\x28 bad')\n"
    result = run(runtime, code)
    assert result.status == "ok"
    assert result.stdout == "ok \ufffd\ufffd end" and result.stderr.endswith("( bad")
    json.dumps(result.to_dict())  # what --json prints
    host_unharmed(docker_client, result.container_id)


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        ("raise SystemExit(255)", 255),
        ("raise SystemExit(-1)", 255),
        ("import os\nos._exit(200)", 200),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", 139),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", 143),
    ],
)
def test_unusual_exit_codes_come_back_as_they_are(
    runtime: DockerRuntime, docker_client: docker.DockerClient, code: str, exit_code: int
) -> None:
    result = run(runtime, code)
    assert (result.status, result.exit_code) == ("error", exit_code)
    host_unharmed(docker_client, result.container_id)


def test_symlinked_output_files_are_never_followed(
    runtime: DockerRuntime, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    target = tmp_path / "host-file.txt"
    target.write_text("original")
    missing = tmp_path / "created-by-sandbox.txt"
    code = f"""
import os
os.symlink({str(target)!r}, 'result.txt')
os.symlink({str(missing)!r}, 'report.txt')
os.symlink('/etc/passwd', 'passwd.txt')
for name in ('result.txt', 'report.txt', 'passwd.txt'):
    try:
        open(name, 'w').write('pwned')
        print('wrote', name)
    except OSError as exc:
        print('refused', name, exc.errno)
"""
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    assert "wrote" not in result.stdout
    assert target.read_text() == "original"
    host_unharmed(docker_client, result.container_id, missing)


# --- classic AST-filter bypasses, with the AST layer OFF ----------------------------------

PROBE = (
    "touch /escaped-{c} 2>/dev/null && echo ESCAPED-ROOTFS; "
    'python3 -c \'import socket; socket.create_connection(("1.1.1.1", 53), 1); '
    'print("ESCAPED-NET")\' 2>/dev/null; '
    "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -q {secret} && echo ESCAPED-ENV; "
    "echo uid=$(id -u)"
)

BYPASSES = {
    "subclass-walking": "system = [c for c in ().__class__.__base__.__subclasses__() "
    "if c.__name__ == '_wrap_close'][0].__init__.__globals__['system']\n",
    "getattr-built-strings": "b = getattr(__builtins__, '__imp' + 'ort__')\n"
    "system = getattr(b('o' + 's'), 'sys' + 'tem')\n",
    "dunder-import": "system = __import__('os').system\n",
    "importlib": "import importlib\nsystem = importlib.import_module('os').system\n",
    "ctypes": "import ctypes, sys\nlibc = ctypes.CDLL(None)\n"
    "def system(cmd):\n    sys.stdout.flush()\n    return libc.system(cmd.encode())\n",
    "pickle": "import pickle\n"
    "def system(cmd):\n    return pickle.loads(b'cos\\nsystem\\n(V' + cmd.encode() + b'\\ntR.')\n",
    "marshal": "import marshal\n"
    "def system(cmd):\n"
    "    blob = marshal.dumps(compile('import os; os.system(%r)' % cmd, '<m>', 'exec'))\n"
    "    exec(marshal.loads(blob))\n",
    "coding-declaration": "# -*- coding: utf-7 -*-\nsystem = +AF8AXw-import+AF8AXw-('os').system\n",
    "full-width": "system = __\uff49\uff4d\uff50\uff4f\uff52\uff54__('os').system\n",
    "decorators": "def system(cmd):\n"
    "    @exec\n    @('import os; os.system(%r)' % cmd).format\n    class X: pass\n",
    "format-string": "def f(): pass\nimport os as _o\n"
    "print('{0.__globals__[_o].environ}'.format(f))\nsystem = _o.system\n",
}


@pytest.mark.parametrize("snippet", BYPASSES.values(), ids=BYPASSES.keys())
def test_ast_bypass_is_contained_by_the_container_alone(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
    canary: str,
    snippet: str,
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("CODEFLOW_SANDBOX_CANARY_SECRET", secret)
    command = PROBE.format(c=canary, secret=secret)
    code = snippet + f"system({command!r})\n"
    assert check_code(code), "with the AST layer on, the bypass is reported"
    result = run(runtime, code, Limits(timeout_s=10))
    assert result.status == "ok", result.stderr
    if runtime.runtime == "runc":  # gVisor's (Debian 2022) cannot start /bin/sh through
        # glibc's posix_spawn at all: there the bypass reaches os.system, which fails
        assert "uid=10001" in result.stdout, "the bypass really reached a shell"
    assert "ESCAPED" not in result.stdout and secret not in result.stdout
    host_unharmed(docker_client, result.container_id, Path("/", f"escaped-{canary}"))

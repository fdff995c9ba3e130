"""``devstack.lifetime``: children die with the process that started them, and a stop signal is never missed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack import lifetime
from devstack.emulators import preferred_port

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the watchdog reads /proc (Linux)")

# A parent that starts two marked children, one of which forks a grandchild, in a session of its own (as the
# stacks start theirs), prints its mark and waits.
PARENT = """
import subprocess, sys, time
from devstack import lifetime
env = lifetime.child_env()
subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], env=env, start_new_session=True)
print(lifetime.run_id(), flush=True)
time.sleep(300)
"""


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (a zombie has ended: nobody here may reap it)."""
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(pid)
    return found


def start_parent() -> tuple[subprocess.Popen[str], str, list[int]]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    run = parent.stdout.readline().strip()
    deadline = time.monotonic() + 10
    while len(children := lifetime.marked(run)) < 4:  # sleep, sh, and sh's two sleeps
        assert time.monotonic() < deadline, f"only {children} marked"
        time.sleep(0.05)
    return parent, run, children


@linux_only
def test_a_killed_parent_takes_its_children_and_theirs_with_it() -> None:
    parent, run, children = start_parent()
    parent.kill()  # SIGKILL: no handler, no finally, no atexit
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(children):
        assert time.monotonic() < deadline, f"still running 5 s after the parent died: {alive(children)}"
        time.sleep(0.05)
    assert lifetime.marked(run) == []


@linux_only
def test_a_parent_ended_by_a_signal_it_does_not_handle_takes_its_children_too() -> None:
    parent, _run, children = start_parent()
    parent.send_signal(signal.SIGTERM)  # Python's default: the process ends without unwinding
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(children):
        assert time.monotonic() < deadline, f"still running: {alive(children)}"
        time.sleep(0.05)


def test_the_watchdog_does_not_carry_the_mark_it_kills() -> None:
    """Else a grandparent's watchdog could kill it together with its parent, and orphan the parent's children."""
    env = lifetime.child_env({"X": "1"})
    assert env[lifetime.RUN_VAR] == lifetime.run_id() and env["X"] == "1"
    assert os.environ.get(lifetime.RUN_VAR) != lifetime.run_id()  # this process itself is not marked


# The main thread waits while a worker thread takes the signal: signal.pause() would wait for ever.
WAITER = """
import signal, sys, threading, time
from devstack import lifetime
worker = threading.Thread(target=time.sleep, args=(30,), daemon=True)
worker.start()
threading.Timer(0.2, signal.pthread_kill, (worker.ident, signal.SIGTERM)).start()
started = time.monotonic()
got = lifetime.wait_for_stop()
print(signal.Signals(got).name, round(time.monotonic() - started, 2), flush=True)
"""


def test_a_stop_signal_taken_by_another_thread_still_wakes_the_main_thread() -> None:
    done = subprocess.run([sys.executable, "-c", WAITER], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    name, seconds = done.stdout.split()
    assert name == "SIGTERM"
    assert float(seconds) < 0.8  # the wake-up fd, 0.2 s in, not the 1 s safety timeout, ended the wait


@linux_only
def test_a_taken_port_names_the_process_that_holds_it() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        chosen, note = preferred_port(port, "the GCP API")
    assert chosen != port
    assert note.startswith(f"the GCP API: port {port} is held by pid {os.getpid()} (")
    assert f"using port {chosen}" in note


def test_a_free_port_is_taken_without_a_note() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert preferred_port(port, "the Azure API") == (port, "")

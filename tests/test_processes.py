import os
import signal
import sys
import threading
import time
from pathlib import Path

from ariel_airflow.localdev.processes import ORPHAN_GRACE, ProcessTable, Tracked


def test_start_tracks_by_pid_file_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path / "run", tmp_path / "logs")
    # A parent that ignores nothing and a child of its own, like an Airflow component.
    script = (
        "import subprocess, time; subprocess.Popen(['sleep', '60']); print('up', flush=True); time.sleep(60)"
    )
    tracked = table.start("svc", [sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path)
    assert table.pid_file("svc").exists()
    deadline = time.monotonic() + 10
    while "up" not in table.log_file("svc").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = tracked.process().children()[0]
    assert [t.name for t in table.running()] == ["svc"]

    assert table.stop({"svc": signal.SIGTERM}, timeout=5) == ["svc"]
    assert not tracked.alive()
    assert not child.is_running() or child.status() == "zombie"
    assert not table.pid_file("svc").exists()
    assert table.stop({"svc": signal.SIGTERM}) == []


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    # Our own pid, but a start time that does not match: some other process now has that pid.
    stranger = Tracked("svc", os.getpid(), started=1.0)
    assert not stranger.alive()


def test_a_session_whose_leader_was_killed_is_stopped_even_if_it_ignores_sigterm(tmp_path: Path) -> None:
    """A scheduler killed with SIGKILL leaves workers that ignore SIGTERM: stop() ends them."""
    table = ProcessTable(tmp_path / "run", tmp_path / "logs")
    worker = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('worker', flush=True); time.sleep(120)"
    )
    script = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {worker!r}]); time.sleep(120)"
    )
    tracked = table.start("svc", [sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path)
    deadline = time.monotonic() + 10
    while "worker" not in table.log_file("svc").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker_proc = tracked.process().children()[0]
    os.kill(tracked.pid, signal.SIGKILL)
    tracked.popen.wait(5)
    assert table.strays() == [worker_proc]  # found by the stack's mark, though its parent is gone

    t0 = time.monotonic()
    assert table.stop({"svc": signal.SIGTERM}, timeout=30) == ["svc"]
    assert time.monotonic() - t0 < ORPHAN_GRACE + 6  # the grace of an orphan, not the leader's timeout
    assert not worker_proc.is_running() or worker_proc.status() == "zombie"
    assert table.strays() == []


def test_a_service_that_ignores_its_stop_signal_is_killed_after_its_own_grace(tmp_path: Path) -> None:
    """The triggerer's grace is shorter than the rest's: each is killed after its own."""
    table = ProcessTable(tmp_path / "run", tmp_path / "logs")
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(120)"
    )
    names = ("quick", "slow")
    tracked = {
        n: table.start(n, [sys.executable, "-c", stubborn], env=dict(os.environ), cwd=tmp_path) for n in names
    }
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all("up" in table.log_file(n).read_text() for n in names):
        time.sleep(0.1)
    ended: dict[str, float] = {}
    watchers = [
        threading.Thread(target=lambda n=n: (tracked[n].popen.wait(), ended.setdefault(n, time.monotonic())))
        for n in names
    ]
    for watcher in watchers:
        watcher.start()
    t0 = time.monotonic()
    stopped = table.stop(dict.fromkeys(names, signal.SIGTERM), timeout=30, grace={"quick": 1, "slow": 4})
    for watcher in watchers:
        watcher.join(10)
    assert sorted(stopped) == ["quick", "slow"]
    assert all(tracked[n].popen.returncode == -signal.SIGKILL for n in names)
    assert 1 <= ended["quick"] - t0 < 3.5 <= ended["slow"] - t0 < 10

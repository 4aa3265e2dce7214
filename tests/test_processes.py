import os
import signal
import sys
import time
from pathlib import Path

from ariel_airflow.localdev.processes import ProcessTable, Tracked


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

"""bench/cpu.py counts the CPU of a whole process tree: live processes and the children they reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil

from conftest import KIT_ROOT

sys.path.insert(0, str(KIT_ROOT / "bench"))
import cpu  # noqa: E402 - the bench's module

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


def test_a_tree_counts_its_live_processes_and_the_children_they_reaped() -> None:
    # A parent spins 0.4 s, runs a child that spins 0.4 s (and reaps it), then waits to be measured.
    parent = textwrap.dedent(f"""
        import subprocess, sys, time
        exec({SPIN!r})
        subprocess.run([sys.executable, "-c", {SPIN!r}], check=True)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        seconds = cpu.tree_cpu_seconds([psutil.Process(proc.pid)])
    finally:
        proc.kill()
        proc.wait()
    assert 0.8 <= seconds < 3, seconds  # both spins, plus two Python start-ups


def test_the_floor_divides_by_the_cores() -> None:
    assert cpu.floor_seconds(os.cpu_count() * 3.0) == 3.0

"""`up` and `down --purge` many times in a row, on each engine: start-up must never flake.

ARIEL_CYCLES sets how many (2 by default, to keep CI short; ARIEL_CYCLES=10 for the full
check); every cycle must come up healthy and leave nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from ariel_airflow.localdev.docker_engine import DockerEngine
from ariel_airflow.localdev.processes import STACK_ENV
from ariel_airflow.localdev.state import free_port
from ariel_airflow.team import TeamRepo

from conftest import copy_demo_team, run_ariel, status_json

CYCLES = int(os.environ.get("ARIEL_CYCLES", "2"))  # the issue asks for 10: ARIEL_CYCLES=10
# A cycle takes 1 to 8 minutes on a shared 2-core machine (load 14 measured), Docker the longer.
pytestmark = pytest.mark.timeout(CYCLES * 600)


def cycle(repo: Path, engine: str) -> None:
    result = run_ariel(
        "local", "up", "--engine", engine, "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 0, result.stderr
    status = status_json(repo)
    assert status["engine"] == engine and all(row["health"] == "healthy" for row in status["services"])
    result = run_ariel("local", "down", "--purge", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr


def marked_processes(state_dir: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(STACK_ENV, "").startswith(str(state_dir)):
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def run_cycles(base: Path, engine: str) -> None:
    repo = copy_demo_team(base / "team-demo")
    for number in range(1, CYCLES + 1):
        t0 = time.monotonic()
        try:
            cycle(repo, engine)
        except AssertionError as exc:
            raise AssertionError(f"cycle {number} of {CYCLES} failed: {exc}") from None
        print(f"{engine} cycle {number}: {time.monotonic() - t0:.0f}s")
        assert marked_processes(repo / ".ariel") == []
        if engine == "docker":
            assert DockerEngine(TeamRepo.load(repo)).containers() == {}


@pytest.mark.slow
@pytest.mark.postgres
def test_native_up_down_purge_in_a_row() -> None:
    base = Path(os.environ.get("ARIEL_TEST_DIR", "/tmp")) / f"ariel-cycles-{os.getpid()}"
    base.mkdir(mode=0o755, parents=True)
    try:
        run_cycles(base, "native")
    finally:
        run_ariel("local", "down", "--purge", "--team-repo", str(base / "team-demo"))
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.docker
def test_docker_up_down_purge_in_a_row(docker_client) -> None:  # noqa: ANN001
    base = Path(os.environ.get("ARIEL_TEST_DIR", "/tmp")) / f"ariel-cycles-docker-{os.getpid()}"
    base.mkdir(mode=0o755, parents=True)
    try:
        run_cycles(base, "docker")
    finally:
        run_ariel("local", "down", "--purge", "--team-repo", str(base / "team-demo"))
        shutil.rmtree(base, ignore_errors=True)

"""`ariel local up --timeout`: how long a service may take to become healthy, and the error that says so."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.state import StackState, free_port
from ariel_airflow.team import TeamRepo

from conftest import copy_demo_team


def test_a_service_not_healthy_within_the_timeout_fails_then_and_names_the_option(tmp_path: Path) -> None:
    engine = NativeEngine(TeamRepo.load(copy_demo_team(tmp_path / "team")))
    engine.start_timeout = 2  # what `--timeout 2` sets; the api-server's own default is 240 s
    state = StackState(ui_port=free_port())
    api_server = next(s for s in engine.services(state) if s.name == "api-server")
    # A live process that never answers on the api-server's port.
    tracked = engine.table.start("api-server", ["sleep", "60"], env=dict(os.environ), cwd=tmp_path)
    t0 = time.monotonic()
    try:
        with pytest.raises(UserError) as failed:
            engine._wait(api_server, tracked, state)
    finally:
        engine.table.stop({"api-server": signal.SIGTERM}, timeout=5)
    assert 2 <= time.monotonic() - t0 < 10
    assert "not healthy after 2s" in failed.value.message
    assert "ariel local up --timeout" in failed.value.message

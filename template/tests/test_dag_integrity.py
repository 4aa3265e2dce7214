"""Every DAG file imports cleanly and every DAG carries the team's basics (platform-owned file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEAM = yaml.safe_load((REPO / ".copier-answers.yml").read_text())["team_name"]


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=REPO / "dags", bundle_path=REPO / "dags", bundle_name=TEAM)


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_dags_carry_the_team_prefix_tag_and_owner(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag_id.startswith(f"{TEAM}__"), dag_id
        assert f"team:{TEAM}" in dag.tags, dag_id
        assert all(task.owner and task.owner != "airflow" for task in dag.tasks), dag_id

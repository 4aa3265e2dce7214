"""What goes into the Docker engine's images (no daemon needed)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from ariel_airflow.localdev.images import airflow_requirements

from conftest import KIT_ROOT

PROJECT = tomllib.loads((KIT_ROOT / "pyproject.toml").read_text())["project"]


def requirement_lines(text: bytes) -> set[str]:
    lines = text.decode().splitlines()
    return {str(Requirement(line)) for line in lines if line and not line.startswith("#")}


def test_airflow_image_gets_the_kits_run_time_requirements_and_the_teams(tmp_path: Path) -> None:
    declared = {str(Requirement(r)) for r in PROJECT["dependencies"]}  # what pyproject.toml says
    assert requirement_lines(airflow_requirements(tmp_path)) == declared  # a team without requirements.txt

    (tmp_path / "requirements.txt").write_text("humanize==4.9.0\n")
    assert requirement_lines(airflow_requirements(tmp_path)) == declared | {"humanize==4.9.0"}


def test_airflow_image_gets_none_of_the_kits_development_tools(tmp_path: Path) -> None:
    tools = {Requirement(r).name for extra in PROJECT["optional-dependencies"].values() for r in extra}
    assert {"pytest", "ruff", "copier"} <= tools
    names = {Requirement(line).name for line in requirement_lines(airflow_requirements(tmp_path))}
    assert "apache-airflow" in names and not names & tools

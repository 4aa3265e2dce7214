"""The kit's versions: the pins of its lock files (written by `nox -s lock`, never by hand) and what
is installed (``ariel --version``), read without importing Airflow.

- ``constraints.txt``: the kit and its development tools, resolved for Python 3.11.
- ``constraints-team.txt``: what a team repository receives as its ``constraints.txt``: the kit's
  run-time dependencies and the team's test tools, resolved for every Python version (markers).
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ariel_airflow import __version__
from ariel_airflow.template import KIT_ROOT

AIRFLOW_DISTRIBUTION = "apache-airflow"
KIT_CONSTRAINTS = "constraints.txt"
TEAM_CONSTRAINTS = "constraints-team.txt"


def read_pins(path: Path, python_version: str | None = None) -> dict[str, str]:
    """Package (normalised name) -> pinned version, for one Python version (default: this one).

    A universal lock may pin a package only under a marker (``; python_full_version < '3.12'``):
    the markers are evaluated for ``python_version`` on this platform.
    """
    python_version = python_version or ".".join(platform.python_version_tuple()[:2])
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        (spec,) = requirement.specifier  # a lock pins each package with exactly one `==`
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def airflow_pin(kit_root: Path = KIT_ROOT) -> str:
    """The Airflow version the kit pins: from the lock of a kit checkout, else the installed one."""
    lock = kit_root / KIT_CONSTRAINTS
    if lock.is_file():
        return read_pins(lock)[AIRFLOW_DISTRIBUTION]
    return version(AIRFLOW_DISTRIBUTION)  # an installed kit was installed with its pins


def installed_airflow() -> str | None:
    """The installed Airflow's version, from its distribution metadata (``None`` if not installed)."""
    try:
        return version(AIRFLOW_DISTRIBUTION)
    except PackageNotFoundError:
        return None


def version_text() -> str:
    return f"ariel-airflow {__version__}\napache-airflow {installed_airflow() or '(not installed)'}"

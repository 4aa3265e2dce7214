"""Sessions of the ARIEL Airflow kit. `nox -l` lists them; the docstrings say what each does."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
CONSTRAINTS = ["-c", str(ROOT / "constraints.txt")]
# What template/noxfile.py.jinja installs besides the kit: pinned for teams in constraints-team.txt.
TEAM_TOOLS = ["pytest", "ruff"]
DEMO_TEAM = ROOT / "build" / "demo-team"  # generated from template/ (git-ignored)
PLATFORM_BUILD = ROOT / "build" / "platform"  # `nox -s platform` renders each environment here
CHART_ENV_VAR = "ARIEL_AIRFLOW_CHART"  # as `ariel platform render` reads it
PLATFORM_TESTS = [
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_platform_*.py")),
    "tests/test_capacity.py",
    "tests/test_registry.py",
    "tests/test_cluster_environments.py",
    "tests/test_pools.py",
]


def install_kit(session: nox.Session, extras: str = "") -> None:
    """The kit and Airflow, pinned by constraints.txt (regenerate: `nox -s lock`)."""
    session.install(*CONSTRAINTS, "-e", f".{extras}")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """All tests, including the slow ones on real Postgres, PgBouncer and Airflow processes."""
    install_kit(session, "[test,lint]")  # ruff too: tests lint the repositories the template generates
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (with the AIR rules for DAG code) and the formatter in check mode."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11", default=False)
def local(session: nox.Session) -> None:
    """A demo team, generated from the template, on a local Airflow (`-- --detach` etc. go to `up`)."""
    install_kit(session, "[test]")  # copier comes with the test extra
    session.run(
        "copier",
        "copy",
        "--trust",
        "--defaults",
        "--overwrite",
        "--quiet",
        "--vcs-ref",
        "HEAD",
        "--data",
        "team_name=demo",
        str(ROOT),
        str(DEMO_TEAM),
    )
    session.run("ariel", "local", "up", "--team-repo", str(DEMO_TEAM), *session.posargs)


@nox.session(python="3.11", default=False)
def cluster(session: nox.Session) -> None:
    """The local Kubernetes: `ariel platform cluster ARGS` (build, up, status, down; default: up)."""
    install_kit(session)
    session.run("ariel", "platform", "cluster", *(session.posargs or ["up"]))


@nox.session(python="3.11", default=False)
def platform(session: nox.Session) -> None:
    """Render dev, test and prod into build/platform/<env>, validate the files as CI would, and run
    the platform tests (not the platform image's Docker build: `nox -s tests` has it; pytest options
    after `--` replace `-m "not docker"`). Needs the official chart: ARIEL_AIRFLOW_CHART=<its folder
    or .tgz>."""
    if not os.environ.get(CHART_ENV_VAR):
        session.error(
            f"set {CHART_ENV_VAR} to the official Airflow chart's folder or .tgz "
            f"(e.g. {CHART_ENV_VAR}=path/to/airflow/chart nox -s platform)"
        )
    install_kit(session, "[test]")
    for env in sorted(path.stem for path in (ROOT / "platform" / "environments").glob("*.yaml")):
        out = PLATFORM_BUILD / env
        session.run("ariel", "platform", "render", env, "--out", str(out))
        session.run("ariel", "platform", "validate", env, "--rendered", str(out))
    session.run("pytest", *PLATFORM_TESTS, *(session.posargs or ["-m", "not docker"]))


@nox.session(python="3.11", default=False)
def compose(session: nox.Session) -> None:
    """Regenerate localdev/compose.yaml from the stack model (a test fails while it is stale)."""
    install_kit(session)
    session.run("python", "-m", "ariel_airflow.localdev.compose")


@nox.session(python="3.11", default=False)
def lock(session: nox.Session) -> None:
    """Re-pin: constraints.txt (the kit and its tools, Python 3.11) and constraints-team.txt (teams)."""
    session.install("uv")
    compile_ = ("uv", "pip", "compile", "--quiet", "--custom-compile-command", "nox -s lock")
    session.run(
        *compile_,
        "pyproject.toml",
        "--extra",
        "test",
        "--extra",
        "lint",
        "--python-version",
        "3.11",
        "-o",
        "constraints.txt",
    )
    # What each team repository receives (template/constraints.txt.jinja): the kit's run-time
    # dependencies and the team's test tools, for every Python the template offers (--universal),
    # at the kit's own versions wherever both lock a package (-c constraints.txt).
    tools = Path(session.create_tmp()) / "team-tools.in"
    tools.write_text("\n".join(TEAM_TOOLS) + "\n")
    session.run(
        *compile_,
        "pyproject.toml",
        str(tools),
        "--universal",
        "--python-version",
        "3.11",
        "-c",
        "constraints.txt",
        "-o",
        "constraints-team.txt",
    )

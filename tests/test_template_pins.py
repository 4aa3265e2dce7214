"""What a team repository pins: its constraints (every offered Python) and the kit (the template's source)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import requires, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ariel_airflow.pins import KIT_CONSTRAINTS, TEAM_CONSTRAINTS, airflow_pin, read_pins
from ariel_airflow.template import generate_team_repo

from conftest import KIT_ROOT

OFFERED_PYTHONS = yaml.safe_load((KIT_ROOT / "copier.yml").read_text())["python_version"]["choices"]
KIT_LOCK, TEAM_LOCK = KIT_ROOT / KIT_CONSTRAINTS, KIT_ROOT / TEAM_CONSTRAINTS
TEAM_TOOLS = {"pytest", "ruff"}  # what the generated noxfile installs besides the kit


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def pyproject_pin(repo: Path) -> str:
    (pin,) = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    return pin


def run_nox(repo: Path, *sessions: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The generated repository's own sessions, as its CI runs them (no ARIEL_KIT_SOURCE unless given)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "ARIEL_KIT_SOURCE")}
    return subprocess.run(
        [sys.executable, "-m", "nox", "-s", *sessions],
        cwd=repo,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1200,
    )


def installed_kit(repo: Path, session: str) -> dict:
    """Where the nox session's environment got the kit from (PEP 610 direct_url.json)."""
    (direct_url,) = (repo / ".nox" / session).glob(
        "lib/python*/site-packages/ariel_airflow-*.dist-info/direct_url.json"
    )
    return json.loads(direct_url.read_text())


# ---------------------------------------------------------------- the lock files


def test_team_pins_hold_the_kit_versions_wherever_both_lock_a_package() -> None:
    kit, team = read_pins(KIT_LOCK, "3.11"), read_pins(TEAM_LOCK, "3.11")
    shared = kit.keys() & team.keys()
    assert {"apache-airflow", "apache-airflow-providers-cncf-kubernetes", "pytest", "ruff"} <= shared
    assert {name: team[name] for name in shared} == {name: kit[name] for name in shared}


@pytest.mark.parametrize("python", OFFERED_PYTHONS)
def test_team_pins_cover_the_kit_and_the_team_tools_on_every_offered_python(python: str) -> None:
    pins = read_pins(TEAM_LOCK, python)
    runtime = {
        canonicalize_name(Requirement(r).name) for r in requires("ariel-airflow") if "extra ==" not in r
    }
    assert runtime | TEAM_TOOLS <= pins.keys()
    # the kit's development tools stay out of team repositories
    assert not {"copier", "nox", "testcontainers", "pytest-timeout"} & pins.keys()


def test_the_generated_noxfile_installs_nothing_the_team_pins_leave_out(workdir: Path) -> None:
    repo = generate_team_repo(workdir / "recon", "recon")
    installed = {
        arg.value
        for node in ast.walk(ast.parse((repo / "noxfile.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "install"
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    }
    assert installed == TEAM_TOOLS  # the kit and the pins go in as names (KIT, PINS)
    assert installed <= read_pins(repo / "constraints.txt", "3.12").keys()


def test_airflow_pin_is_the_airflow_this_environment_was_installed_with(tmp_path: Path) -> None:
    assert airflow_pin() == version("apache-airflow")  # the venv was installed -c constraints.txt
    assert airflow_pin(kit_root=tmp_path) == version("apache-airflow")  # an installed kit, no checkout


# ---------------------------------------------------------------- the kit pin


@pytest.fixture
def kit_remote(workdir: Path) -> Path:
    """A bare git repository of the kit's committed HEAD, tagged v0.1.0, as a platform would host it."""
    remote = workdir / "kit.git"
    git(workdir, "init", "-q", "--bare", "-b", "main", str(remote))
    git(KIT_ROOT, "push", "-q", str(remote), "HEAD:refs/heads/main")
    git(remote, "tag", "v0.1.0", "main")
    return remote


def release(remote: Path, workdir: Path, tag: str) -> str:
    """A newer kit version on the remote: a commit that bumps VERSION, tagged; returns its hash."""
    clone = workdir / f"release-{tag}"
    git(workdir, "clone", "-q", str(remote), str(clone))
    (clone / "src/ariel_airflow/VERSION").write_text(tag.removeprefix("v") + "\n")
    git(clone, "commit", "-qam", f"Release {tag}")
    git(clone, "tag", tag)
    git(clone, "push", "-q", "origin", "main", tag)
    return git(clone, "rev-parse", "HEAD")


def copier(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "copier", *args, "--trust", "--defaults", "--quiet"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr


def test_a_copy_from_a_tagged_local_repository_pins_that_repository_and_commit(
    kit_remote: Path, workdir: Path
) -> None:
    repo = workdir / "recon"
    copier(
        "copy", "--vcs-ref", "v0.1.0", "--data", "team_name=recon", str(kit_remote), str(repo), cwd=workdir
    )
    tagged = git(kit_remote, "rev-parse", "v0.1.0^{commit}")
    assert pyproject_pin(repo) == f"ariel-airflow @ git+file://{kit_remote}@{tagged}"


def test_a_working_tree_or_plain_directory_pins_the_directory(workdir: Path) -> None:
    # HEAD of a checkout may carry uncommitted changes that no commit holds: the directory is the pin
    assert pyproject_pin(generate_team_repo(workdir / "a", "recon")) == f"ariel-airflow @ file://{KIT_ROOT}"
    plain = workdir / "kit-copy"  # a template directory that is no git repository
    shutil.copytree(
        KIT_ROOT, plain, ignore=shutil.ignore_patterns(".git", ".venv", ".nox", "build", "*cache*")
    )
    repo = generate_team_repo(workdir / "b", "recon", template=plain)
    assert pyproject_pin(repo) == f"ariel-airflow @ file://{plain}"


def test_a_platform_index_pins_the_kit_version_and_is_the_only_index(workdir: Path) -> None:
    index = "https://pkgs.example.com/pypi/simple/"
    repo = generate_team_repo(workdir / "recon", "recon", kit_index_url=index)
    kit_version = (KIT_ROOT / "src/ariel_airflow/VERSION").read_text().strip()
    assert pyproject_pin(repo) == f"ariel-airflow=={kit_version}"
    assert f'PINS = ("--index-url", "{index}", "-c", "constraints.txt")' in (repo / "noxfile.py").read_text()
    assert yaml.safe_load((repo / ".copier-answers.yml").read_text())["kit_index_url"] == index


@pytest.mark.slow
def test_a_team_copied_from_a_git_url_installs_the_pinned_kit_and_update_moves_the_pin(
    kit_remote: Path, workdir: Path
) -> None:
    url, repo = f"file://{kit_remote}", workdir / "recon"
    copier("copy", "--data", "team_name=recon", url, str(repo), cwd=workdir)  # the latest tag: v0.1.0
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "Start from the ARIEL template")
    first = git(kit_remote, "rev-parse", "v0.1.0^{commit}")
    assert pyproject_pin(repo) == f"ariel-airflow @ git+{url}@{first}"

    result = run_nox(repo, "lint", "tests", "check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    kit = installed_kit(repo, "check")
    assert (kit["url"], kit["vcs_info"]["commit_id"]) == (url, first)
    assert git(repo, "status", "--porcelain") == ""

    second = release(kit_remote, workdir, "v0.2.0")
    copier("update", cwd=repo)
    assert pyproject_pin(repo) == f"ariel-airflow @ git+{url}@{second}"
    assert yaml.safe_load((repo / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
    result = run_nox(repo, "check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert installed_kit(repo, "check")["vcs_info"]["commit_id"] == second


# ---------------------------------------------------------------- Python 3.12


def python_312(workdir: Path) -> dict[str, str]:
    """PATH with a Python 3.12 that nox finds: one already on PATH, or pyenv's (not on PATH as-is)."""
    candidates = [shutil.which("python3.12")] + sorted(
        str(p)
        for p in Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(
            "versions/3.12*/bin/python3.12"
        )
    )
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            bin_dir = workdir / "python3.12-bin"
            bin_dir.mkdir(exist_ok=True)
            (bin_dir / "python3.12").symlink_to(candidate)
            return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    pytest.skip("no Python 3.12 interpreter (install one, e.g. `uv python install 3.12`)")


@pytest.mark.slow
def test_a_team_on_python_3_12_passes_its_own_lint_tests_and_check(workdir: Path) -> None:
    env = python_312(workdir)
    repo = generate_team_repo(workdir / "recon", "recon", python_version="3.12")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "Start from the ARIEL template")
    result = run_nox(repo, "lint", "tests", "check", env={**env, "ARIEL_KIT_SOURCE": str(KIT_ROOT)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for session in ("lint", "tests", "check"):
        assert list((repo / ".nox" / session / "lib").glob("python3.12")), session
    assert git(repo, "status", "--porcelain") == ""

"""Teams cannot starve each other: one Airflow pool per team, sized to its quota, in the chart's
helm-test style (the real, unmodified official chart, one object per test), and the real cluster
policy on real DAG objects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_platform_render import CHART, PLATFORM, SECOND_TEAM, load, render_chart

from ariel_airflow.cluster.environments import load_environment
from ariel_airflow.cluster.pools import pool_findings
from ariel_airflow.cluster.registry import load_registry
from ariel_airflow.cluster.render import effective_values
from ariel_airflow.policies import LOCAL_SETTINGS_FILE, local_settings_source
from ariel_airflow.profiles import load_profiles, parse_quantity

from conftest import run_ariel

chart_needed = pytest.mark.skipif(
    not CHART.is_dir(), reason=f"the official Airflow chart is not at {CHART}: set ARIEL_AIRFLOW_CHART"
)


@pytest.fixture
def platform_dir(tmp_path: Path) -> Path:
    """The kit's platform folder with a second team, "alpha", next to demo, that uses "small" only."""
    copy = tmp_path / "platform"
    shutil.copytree(PLATFORM, copy)
    (copy / "teams" / "alpha.yaml").write_text(SECOND_TEAM + "profiles: [small]\n")
    return copy


def quantity(text: str | int) -> Decimal:
    return parse_quantity(text)


@chart_needed
def test_each_teams_pool_fits_its_quota(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    pools = json.loads((out / "pools.json").read_text())
    catalog = yaml.safe_load((platform_dir / "resource_profiles.yaml").read_text())
    for team in ("demo", "alpha"):
        hard = load(out / "teams" / team / f"resourcequota-{team}-quota.yaml")["spec"]["hard"]
        entry = yaml.safe_load((platform_dir / "teams" / f"{team}.yaml").read_text())
        slots = pools[f"team-{team}"]["slots"]
        assert slots >= 1
        assert slots <= int(hard["pods"])
        # A pool full of any profile the team may use stays within every figure of the quota.
        for name in entry.get("profiles") or catalog:
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    asked = slots * quantity(catalog[name][section][resource])
                    assert asked <= quantity(hard[f"{section}.{resource}"]), (team, name, section, resource)
    # Worked out by hand: demo (small, medium) 2500m / 500m = 10Gi / 2Gi = 5; alpha (small) 4 pods,
    # 1 CPU / 250m = 2Gi / 512Mi = 4.
    assert pools["team-demo"]["slots"] == 5
    assert pools["team-alpha"]["slots"] == 4


@chart_needed
def test_the_pools_fit_the_schedulers_parallelism(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    values = load(out / "values.yaml")
    pools = json.loads((out / "pools.json").read_text())
    assert sum(pool["slots"] for pool in pools.values()) <= (
        int(values["config"]["core"]["parallelism"]) * values["scheduler"]["replicas"]
    )


@chart_needed
def test_the_migration_job_imports_the_pools_from_the_configmap(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    configmap = load(out / "chart" / "configmap-airflow-pools.yaml")
    assert json.loads(configmap["data"]["pools.json"]) == json.loads((out / "pools.json").read_text())
    # Created before the job (pre-install/pre-upgrade) that runs after every install and upgrade.
    assert "pre-upgrade" in configmap["metadata"]["annotations"]["helm.sh/hook"]
    job = load(out / "chart" / "job-airflow-run-airflow-migrations.yaml")
    assert "post-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["args"][-1]
    assert command.index("airflow db migrate") < command.index(
        "airflow pools import /opt/airflow/pools/pools.json"
    )
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == "airflow-pools")
    assert {"name": volume["name"], "mountPath": "/opt/airflow/pools", "readOnly": True} in container[
        "volumeMounts"
    ]
    version = load_environment("prod", platform_dir).kubernetes_version
    for obj in (configmap, job):
        kubernetes_validate.validate(obj, version, strict=True)


def test_pool_findings_report_too_small_a_parallelism(platform_dir: Path) -> None:
    (platform_dir / "teams" / "alpha.yaml").unlink()  # demo alone: 5 slots
    env = load_environment("prod", platform_dir)
    registry = load_registry(platform_dir)
    catalog = load_profiles(platform_dir / "resource_profiles.yaml")
    values = effective_values(env, registry, platform_dir)
    assert pool_findings(env, registry, values, catalog) == []
    values["config"]["core"]["parallelism"] = 2  # x 2 scheduler replicas in prod = 4 < 5
    (finding,) = pool_findings(env, registry, values, catalog)
    assert "5 slots" in finding and "2 parallelism x 2 scheduler replicas = 4" in finding
    assert "values-prod.yaml" in finding


def test_pool_findings_report_a_pool_its_quota_cannot_hold(platform_dir: Path) -> None:
    # Without a profiles field alpha may use "large" (2 CPU) but its quota has 1 CPU.
    (platform_dir / "teams" / "alpha.yaml").write_text(SECOND_TEAM)
    env = load_environment("prod", platform_dir)
    registry = load_registry(platform_dir)
    catalog = load_profiles(platform_dir / "resource_profiles.yaml")
    values = effective_values(env, registry, platform_dir)
    (finding,) = pool_findings(env, registry, values, catalog)
    assert "'team-alpha' has no slot" in finding and "'large'" in finding
    # A pool edited above its quota (say by hand in the values) is named with what it exceeds.
    pools = json.loads(
        yaml.safe_load(values["extraConfigMaps"]["{{ .Release.Name }}-pools"]["data"])["pools.json"]
    )
    pools["team-demo"]["slots"] = 6
    values["extraConfigMaps"]["{{ .Release.Name }}-pools"]["data"] = "pools.json: " + json.dumps(
        json.dumps(pools)
    )
    messages = pool_findings(env, registry, values, catalog)
    assert any("'team-demo' (6 slots) does not fit" in m and "requests.cpu: 2500m" in m for m in messages)


def test_a_registry_entry_naming_an_unknown_profile_is_refused(platform_dir: Path) -> None:
    from ariel_airflow.cluster.pools import team_pools
    from ariel_airflow.errors import UserError

    (platform_dir / "teams" / "alpha.yaml").write_text(SECOND_TEAM + "profiles: [small, huge]\n")
    with pytest.raises(UserError) as error:
        team_pools(load_registry(platform_dir), load_profiles(platform_dir / "resource_profiles.yaml"))
    assert "'huge'" in error.value.message and error.value.where == "teams/alpha.yaml: profiles"


# -- the cluster policy, as the dag-processor runs it --------------------------------------------
def _dag_of(team: str, pool: str | None) -> Any:
    from datetime import timedelta

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    args = {"owner": f"{team}@example.com", "retries": 1, "execution_timeout": timedelta(minutes=5)}
    with DAG(f"{team}__x", schedule=None, tags=[f"team:{team}"], default_args=args) as dag:
        EmptyOperator(task_id="t", **({"pool": pool} if pool else {}))
    return dag


def test_the_policy_puts_a_task_into_its_teams_pool() -> None:
    from ariel_airflow import policies

    dag = _dag_of("alpha", None)
    assert dag.get_task("t").pool == "default_pool"
    policies.task_policy(dag.get_task("t"))
    assert dag.get_task("t").pool == "team-alpha"


STEALING_DAGS = """\
from datetime import timedelta
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
args = {"owner": "alpha@example.com", "retries": 1, "execution_timeout": timedelta(minutes=5)}
with DAG("alpha__steals", schedule=None, tags=["team:alpha"], default_args=args):
    EmptyOperator(task_id="in_demos_pool", pool="team-demo")
with DAG("alpha__own", schedule=None, tags=["team:alpha"], default_args=args):
    EmptyOperator(task_id="no_pool")
"""
LOAD_LIKE_THE_DAG_PROCESSOR = """\
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="alpha")
pools = {dag_id: {t.task_id: t.pool for t in dag.tasks} for dag_id, dag in bag.dags.items()}
print(json.dumps({"errors": list(bag.import_errors.values()), "pools": pools}))
"""


def test_a_task_of_team_a_cannot_run_in_team_bs_pool(tmp_path: Path) -> None:
    """The platform's airflow_local_settings.py in AIRFLOW_HOME/config, a real DAG file, and DagBag
    loading it in a fresh Airflow process, as the dag-processor does."""
    home = tmp_path / "airflow"
    (home / "config").mkdir(parents=True)
    (home / "config" / LOCAL_SETTINGS_FILE).write_text(local_settings_source())
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alpha_steals.py").write_text(STEALING_DAGS)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_LIKE_THE_DAG_PROCESSOR, str(dags)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    (error,) = loaded["errors"]
    assert "AirflowClusterPolicyViolation" in error and "ARL402" in error and "'team-demo'" in error
    assert loaded["pools"] == {"alpha__own": {"no_pool": "team-alpha"}}  # steals: refused as a whole


def test_capacity_prints_the_pools_and_says_when_they_exceed_parallelism(platform_dir: Path) -> None:
    result = run_ariel("capacity", "prod", "--json", "--platform-dir", str(platform_dir))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["team_pools"]
    assert {pool["name"]: pool["slots"] for pool in report["teams"]} == {"team-alpha": 4, "team-demo": 5}
    assert (report["scheduler_slots"], report["pool_slots"], report["findings"]) == (64, 9, [])
    overlay = platform_dir / "helm" / "values-prod.yaml"
    values = yaml.safe_load(overlay.read_text())
    values.setdefault("config", {})["core"] = {"parallelism": 4}  # too small for the teams' pools
    overlay.write_text(yaml.safe_dump(values))
    table = run_ariel("capacity", "prod", "--platform-dir", str(platform_dir))
    assert table.returncode == 0, table.stderr
    assert "team-alpha" in table.stdout and "team pools: 9 slots of 8" in table.stdout
    assert "more than the schedulers run at once (4 parallelism x 2 scheduler replicas = 8)" in table.stderr

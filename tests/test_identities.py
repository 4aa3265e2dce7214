"""`ariel platform identities ENV`: what workload identity needs on Azure, from the rendered output."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from ariel_airflow.cluster.render import render_in_memory

from conftest import CHART, KIT_ROOT, run_ariel

pytestmark = pytest.mark.skipif(
    not CHART.is_dir() and not os.environ.get("ARIEL_AIRFLOW_CHART"),
    reason=f"the official Airflow chart is not at {CHART}: set ARIEL_AIRFLOW_CHART to its folder",
)


def annotated(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(namespace/name, client id) of every service account with a workload identity client id."""
    found = set()
    for obj in objects:
        client_id = (obj["metadata"].get("annotations") or {}).get("azure.workload.identity/client-id")
        if obj["kind"] == "ServiceAccount" and client_id:
            found.add((f"{obj['metadata'].get('namespace', 'airflow')}/{obj['metadata']['name']}", client_id))
    return found


@pytest.mark.parametrize("env", ["prod", "local"])
def test_the_federated_credentials_are_exactly_the_annotated_service_accounts(env: str) -> None:
    done = run_ariel("platform", "identities", env, "--json", "--chart", str(CHART))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    result = render_in_memory(env, chart=CHART)
    rendered = annotated([*result.chart_objects, *result.platform_objects()])
    listed = {(c["service_account"], c["client_id"]) for c in found["federated_credentials"]}
    assert listed == rendered and len(listed) == len(found["federated_credentials"])
    assert ("airflow-demo/demo-tasks", result.registry["demo"].managed_identity_client_id) in listed
    for credential in found["federated_credentials"]:
        namespace, name = credential["service_account"].split("/")
        assert credential["subject"] == f"system:serviceaccount:{namespace}:{name}"
        assert credential["audience"] == "api://AzureADTokenExchange"
        assert credential["issuer"] == result.env.workload_identity_issuer


def test_each_identity_gets_only_its_own_vault_and_log_prefix() -> None:
    done = run_ariel("platform", "identities", "prod", "--json", "--chart", str(CHART))
    found = json.loads(done.stdout)
    result = render_in_memory("prod", chart=CHART)
    platform = result.env.platform_identity.client_id
    demo = result.registry["demo"].managed_identity_client_id
    by_identity: dict[str, list[dict[str, str]]] = {}
    for role in found["role_assignments"]:
        by_identity.setdefault(role["client_id"], []).append(role)
    assert {(r["role"], r["scope"]) for r in by_identity[demo] if "condition" not in r} == {
        ("Key Vault Secrets User", "https://kv-demo-prod.vault.azure.net/")
    }
    (blob,) = [r for r in by_identity[demo] if "condition" in r]
    assert blob["role"] == "Storage Blob Data Contributor"
    assert blob["condition"].endswith("StringStartsWith 'tasks/dag_id=demo__'")
    assert ("Key Vault Secrets User", result.env.key_vault.url) in {
        (r["role"], r["scope"]) for r in by_identity[platform]
    }
    assert "pgaadauth_create_principal('airflow'" in found["database"][0]


def test_the_local_issuer_is_the_local_api_servers() -> None:
    from ariel_airflow.cluster.environments import load_environment
    from ariel_airflow.localkube.components import SERVICE_ACCOUNT_ISSUER

    assert load_environment("local", KIT_ROOT / "platform").workload_identity_issuer == SERVICE_ACCOUNT_ISSUER

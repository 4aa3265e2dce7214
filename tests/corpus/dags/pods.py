from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, task
from kubernetes.client import models as k8s

from ariel_airflow.profiles import profile

ARGS = {"owner": "recon@example.com", "retries": 1, "execution_timeout": timedelta(minutes=30)}


def override(**spec):
    return {"pod_override": k8s.V1Pod(**spec)}


GREEDY = override(spec=k8s.V1PodSpec(containers=[k8s.V1Container(
    name="base",
    resources=k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "4", "memory": "1Gi"}),
)]))
ELSEWHERE = override(
    metadata=k8s.V1ObjectMeta(namespace="kube-system"),
    spec=k8s.V1PodSpec(service_account_name="default", containers=[k8s.V1Container(name="base")]),
)

OWN_TEMPLATE = {"pod_template_file": str(Path(__file__).parent / "bare_pod.yaml")}
MISSING_TEMPLATE = {"pod_template_file": "/nowhere/pod.yaml"}


@dag(dag_id="recon__pods", schedule=None, start_date=datetime(2025, 1, 1), tags=["team:recon"], default_args=ARGS)
def pods():
    @task(executor_config=profile("medium"))
    def with_profile():
        pass

    @task(executor_config=GREEDY)
    def greedy():
        pass

    @task(executor_config=ELSEWHERE)
    def elsewhere():
        pass

    @task(executor_config=OWN_TEMPLATE)
    def own_template():
        pass

    @task(executor_config=MISSING_TEMPLATE)
    def missing_template():
        pass

    with_profile() >> greedy() >> elsewhere() >> own_template() >> missing_template()


pods()

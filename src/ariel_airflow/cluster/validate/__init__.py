"""``ariel platform validate ENV``: what ``render`` produces (in memory, or the files a previous
``render --out DIR`` wrote), checked before anything reaches the cluster.

1. The values: Helm's own check against the chart's ``values.schema.json``, plus the keys that schema
   lets through because it does not describe them (``executr:`` at the top level).
2. Every object, the chart's and the teams' (and the team repositories' pod templates), against the
   Kubernetes OpenAPI schemas of the environment's Kubernetes version, offline (kubernetes-validate).
3. Cross-checks between the values, the environment file, the registry and the team repositories:
   ``CROSS_CHECKS``, one small function each. Every finding names the file, the field and the fix.
"""

from ariel_airflow.cluster.validate.objects import schema_version
from ariel_airflow.cluster.validate.run import validate

__all__ = ["schema_version", "validate"]

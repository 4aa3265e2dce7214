"""The platform's rules, written once: `ariel check` runs them in CI, the cluster policies at runtime."""

from ariel_airflow.rules.base import RULES, Finding, Rule

__all__ = ["RULES", "Finding", "Rule"]

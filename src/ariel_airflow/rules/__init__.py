"""The platform's rules, written once: `ariel check` runs them in CI, the cluster policies at runtime."""

from ariel_airflow.rules.base import LIMITS, RULES, Finding, Limits, Rule, TeamContext

__all__ = ["LIMITS", "RULES", "Finding", "Limits", "Rule", "TeamContext"]

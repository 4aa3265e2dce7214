"""The platform's limits, written once: the rules, the resource profiles and their messages quote them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# A pod may use at most this much more than it requests (CPU and memory). The scheduler packs
# nodes by requests: a greedy limit overcommits the node and gets its neighbours OOM-killed.
MAX_LIMIT_REQUEST_RATIO = Decimal("1.5")


@dataclass(frozen=True)
class Limits:
    """The platform's limits on DAGs and pods (the README's rule sections quote them)."""

    poke_timeout_hours: float = 1.0
    max_first_deployment_runs: int = 10
    max_limit_ratio: Decimal = MAX_LIMIT_REQUEST_RATIO


LIMITS = Limits()

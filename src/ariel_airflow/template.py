"""Generating team repositories from the kit's copier template (for the demo team, tests, benches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

KIT_ROOT = Path(__file__).resolve().parents[2]  # a source checkout: copier.yml and template/ live here


def generate_team_repo(
    dest: Path, team_name: str, *, template: Path = KIT_ROOT, vcs_ref: str = "HEAD", **answers: Any
) -> Path:
    """Render the template into ``dest`` with default answers except those given (no prompts).

    ``vcs_ref="HEAD"`` renders the working tree, uncommitted changes included; files not in the
    template (the stack state in ``.ariel/``) are left alone when ``dest`` exists.
    """
    from copier import run_copy

    if not (template / "copier.yml").is_file():
        raise FileNotFoundError(f"no copier.yml in {template}: generating needs a checkout of the kit")
    run_copy(
        str(template),
        dest,
        data={"team_name": team_name, **answers},
        defaults=True,
        overwrite=True,
        unsafe=True,  # the template is our own
        vcs_ref=vcs_ref,
        quiet=True,
    )
    return dest

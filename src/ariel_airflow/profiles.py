"""Resource profiles: named requests/limits for task pods, and ``profile()`` for DAG code."""

from __future__ import annotations

import functools
import importlib.util
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ariel_airflow.errors import UserError
from ariel_airflow.limits import MAX_LIMIT_REQUEST_RATIO
from ariel_airflow.team import POD_TEMPLATES_DIR, PROFILE_POD_TEMPLATE, profile_pod_templates

RESOURCES = ("cpu", "memory")


def parse_quantity(value: str | int | float) -> Decimal:
    """The Kubernetes client's own quantity parser."""
    return _k8s_quantity().parse_quantity(value)


@functools.cache
def _k8s_quantity() -> ModuleType:
    """``kubernetes.utils.quantity`` loaded alone: importing it the usual way runs the package's
    ``__init__``, which imports the whole API client (seconds) for a 60-line module of plain Python."""
    package = importlib.util.find_spec("kubernetes")
    assert package and package.origin, "the kubernetes client is a dependency of the kit"
    path = Path(package.origin).parent / "utils" / "quantity.py"
    spec = importlib.util.spec_from_file_location("ariel_airflow._k8s_quantity", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu: str
    memory: str

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> str:
        try:
            parse_quantity(value)
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)") from None
        return str(value)


class ResourceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    requests: Resources
    limits: Resources

    @model_validator(mode="after")
    def _ratio(self) -> ResourceProfile:
        for resource in RESOURCES:
            request = parse_quantity(getattr(self.requests, resource))
            limit = parse_quantity(getattr(self.limits, resource))
            if request <= 0 or limit / request > MAX_LIMIT_REQUEST_RATIO:
                limit_text, request_text = getattr(self.limits, resource), getattr(self.requests, resource)
                raise ValueError(
                    f"limits.{resource} / requests.{resource} must be above 0 and at most "
                    f"{MAX_LIMIT_REQUEST_RATIO} (is {limit_text} / {request_text})"
                )
        return self

    def k8s_resources(self) -> dict[str, dict[str, str]]:
        return {"requests": self.requests.model_dump(), "limits": self.limits.model_dump()}


def load_profiles(path: Path) -> dict[str, ResourceProfile]:
    """Read and check a resource profiles file; errors name the file, the profile and the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError("resource profiles file is missing", where=str(path)) from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict) or not data:
        raise UserError(
            "must map profile names to requests and limits",
            where=str(path),
            fix="see the platform's profiles",
        )
    profiles = {}
    for name, spec in data.items():
        try:
            profiles[name] = ResourceProfile.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise UserError(
                first["msg"].removeprefix("Value error, "),
                where=f"{path}: {name}{'.' + field if field else ''}",
                fix=f"keep limits within {MAX_LIMIT_REQUEST_RATIO}x the requests, as Kubernetes quantities",
            ) from None
    return profiles


def profile(name: str) -> dict[str, Any]:
    """``executor_config`` that runs a task with the team's resource profile ``name``.

    Reads ``pod_templates/profile-<name>.yaml`` of the team repository holding the calling DAG
    file, with the same function the KubernetesExecutor uses for pod templates.
    """
    caller = Path(sys._getframe(1).f_code.co_filename).resolve()  # inspect.stack() reads every source
    path = team_root(caller) / POD_TEMPLATES_DIR / PROFILE_POD_TEMPLATE.format(profile=name)
    if not path.is_file():
        known = profile_pod_templates(path.parent)
        raise ValueError(f"unknown resource profile {name!r}; this team has: {', '.join(known) or 'none'}")
    return {"pod_override": _pod_override(str(path), path.stat().st_mtime)}


@functools.lru_cache(maxsize=64)
def _pod_override(path: str, mtime: float) -> Any:
    """One V1Pod per profile file (and version of it), shared by the tasks that use the profile:
    the executor only reads it, and parsing the same file for every task is slow."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    return PodGenerator.deserialize_model_file(path)


def team_root(start: Path) -> Path:
    for folder in start.parents:
        if (folder / POD_TEMPLATES_DIR).is_dir():
            return folder
    raise ValueError(f"no {POD_TEMPLATES_DIR}/ folder above {start}: is this DAG in a team repository?")

"""The platform's Airflow image: the build context ``ariel platform render`` writes beside the values.

It is built from the same ``localdev/airflow.Dockerfile`` as the local Docker engine's image, with
the same requirements (the kit's, read from its metadata) and pins (the kit's ``constraints.txt``),
at its ``platform`` target, which installs the kit from ``kit/`` instead of mounting it. So what a
team runs locally is what the platform runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ariel_airflow.cluster.environments import Environment
from ariel_airflow.localdev.assets import assets_dir
from ariel_airflow.localdev.images import PLATFORM_TARGET, BuildSettings, airflow_requirements, build_image
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.template import KIT_ROOT

DOCKERFILE = "airflow.Dockerfile"
# What building the kit needs (pyproject.toml's force-include names localdev/ and platform/config/).
KIT_SOURCES = ("pyproject.toml", "README.md", "src/ariel_airflow", "localdev", "platform/config")


def write_image_context(out: Path, env: Environment) -> Path:
    """Write ``out`` as a Docker build context of the platform image; return the ``docker build`` line."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "certs").mkdir(parents=True)
    settings = BuildSettings.from_env()
    for name, content in settings.cert_files().items():  # ARIEL_EXTRA_CA_CERTS, as for the local image
        (out / name).write_bytes(content)
    shutil.copy(assets_dir() / DOCKERFILE, out / DOCKERFILE)
    # The same bytes as the local image's for a team without a requirements.txt: one layer cache.
    (out / "requirements.txt").write_bytes(airflow_requirements(KIT_ROOT))
    shutil.copy(KIT_ROOT / "constraints.txt", out / "constraints.txt")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in KIT_SOURCES:
        origin, target = KIT_ROOT / source, out / "kit" / source
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, target)
    return build_command(out, env, settings)


def airflow_image(values: dict) -> str:
    """The platform image the rendered chart values run (the chart's default image)."""
    return f"{values['defaultAirflowRepository']}:{values['defaultAirflowTag']}"


def build_command(out: Path, env: Environment, settings: BuildSettings) -> str:
    return (
        f"docker build --file {out / DOCKERFILE} --target {PLATFORM_TARGET} "
        f"--build-arg BASE_IMAGE={settings.base_image} --build-arg PIP_INDEX_URL={settings.index_url} "
        f"--tag {env.image.repository}:{env.image.tag} {out}"
    )


def build_platform_image(context: Path, tag: str, progress: Progress) -> str:
    """Build the platform image from render's ``image/`` context as ``tag`` (Docker's layer cache
    makes an unchanged context quick); ``tag``."""
    from ariel_airflow.localdev.docker_tools import docker_client

    settings = BuildSettings.from_env()
    args = {"BASE_IMAGE": settings.base_image, "PIP_INDEX_URL": settings.index_url}
    with progress.step(f"building the platform image {tag}", f"image {tag} built"):
        build_image(docker_client(), context, DOCKERFILE, tag, args, progress, PLATFORM_TARGET)
    return tag

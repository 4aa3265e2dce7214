"""The Docker engine's images, built locally from ``localdev/*.Dockerfile``.

Each image is built from a staged context in the stack's state directory and tagged with a hash of
that context and its build arguments, so ``up`` rebuilds only when something that goes into it
changed (the kit's requirements, the team's requirements, the base image, the CA certificates).

Settings, from the environment (for companies behind a registry mirror, or with none):
  ARIEL_BASE_IMAGE      Debian bookworm base of both images (default debian:bookworm-slim)
  ARIEL_EXTRA_CA_CERTS  PEM files to trust at build time, separated by os.pathsep
  ARIEL_PIP_INDEX_URL   the Python package index to install from (default PyPI)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import requires
from pathlib import Path

import docker
import docker.errors

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.assets import assets_dir
from ariel_airflow.localdev.progress import Progress

DEFAULT_BASE_IMAGE = "debian:bookworm-slim"
DEFAULT_INDEX_URL = "https://pypi.org/simple"
STEP = re.compile(r"^Step \d+/\d+ : ")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Stages of airflow.Dockerfile: the local stack's image, and the platform's (written by render).
LOCAL_TARGET = "local"
PLATFORM_TARGET = "platform"


@dataclass(frozen=True)
class BuildSettings:
    base_image: str
    ca_certs: tuple[Path, ...]
    index_url: str

    def cert_files(self) -> dict[str, bytes]:
        """The build context's ``certs/`` files (the same names give the same layers everywhere)."""
        return {f"certs/{i}-{cert.name}.crt": cert.read_bytes() for i, cert in enumerate(self.ca_certs)}

    @classmethod
    def from_env(cls) -> BuildSettings:
        certs = tuple(Path(p) for p in os.environ.get("ARIEL_EXTRA_CA_CERTS", "").split(os.pathsep) if p)
        for cert in certs:
            if not cert.is_file():
                raise UserError(
                    "CA certificate file not found",
                    where=f"ARIEL_EXTRA_CA_CERTS: {cert}",
                    fix="list existing PEM files, separated by ':'",
                )
        return cls(
            base_image=os.environ.get("ARIEL_BASE_IMAGE") or DEFAULT_BASE_IMAGE,
            ca_certs=certs,
            index_url=os.environ.get("ARIEL_PIP_INDEX_URL") or DEFAULT_INDEX_URL,
        )


def kit_requirements() -> list[str]:
    """What the kit needs at run time (Airflow and the providers among it), from its own metadata."""
    return [req for req in requires("ariel-airflow") or [] if "extra ==" not in req]


def ensure_images(
    client: docker.DockerClient, repo_root: Path, build_dir: Path, progress: Progress
) -> dict[str, str]:
    """Tags of the ``db`` and ``airflow`` images, built now if missing."""
    settings = BuildSettings.from_env()
    context, digest = _stage(
        build_dir / "airflow",
        "airflow.Dockerfile",
        {
            "requirements.txt": airflow_requirements(repo_root),
            "constraints.txt": _constraints(repo_root),
            **settings.cert_files(),
        },
    )
    args = {"BASE_IMAGE": settings.base_image, "PIP_INDEX_URL": settings.index_url}
    airflow = f"ariel-local/airflow:{_hash(digest, args)}"
    _ensure(client, context, "airflow.Dockerfile", airflow, args, progress, LOCAL_TARGET)
    return {"db": ensure_db_image(client, build_dir, progress), "airflow": airflow}


def ensure_db_image(client: docker.DockerClient, build_dir: Path, progress: Progress) -> str:
    """The ``db`` image's tag (PostgreSQL and PgBouncer), built now if missing."""
    args = {"BASE_IMAGE": BuildSettings.from_env().base_image}
    context, digest = _stage(
        build_dir / "db", "db.Dockerfile", {"db-entrypoint.sh": _asset("db-entrypoint.sh")}
    )
    tag = f"ariel-local/db:{_hash(digest, args)}"
    _ensure(client, context, "db.Dockerfile", tag, args, progress)
    return tag


def ensure_azurite_image(client: docker.DockerClient, build_dir: Path, progress: Progress) -> str:
    """The Azurite image's tag (the local cluster's Blob Storage), built now if missing."""
    settings = BuildSettings.from_env()
    context, digest = _stage(build_dir / "azurite", "azurite.Dockerfile", settings.cert_files())
    args = {"BASE_IMAGE": settings.base_image}
    tag = f"ariel-local/azurite:{_hash(digest, args)}"
    _ensure(client, context, "azurite.Dockerfile", tag, args, progress)
    return tag


def _ensure(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    tag: str,
    args: dict[str, str],
    progress: Progress,
    target: str | None = None,
) -> None:
    if _exists(client, tag):
        progress.info(f"image {tag} is up to date")
        return
    with progress.step(f"building image {tag} on {args['BASE_IMAGE']}", f"image {tag} built"):
        build_image(client, context, dockerfile, tag, args, progress, target)


def _asset(name: str) -> bytes:
    return (assets_dir() / name).read_bytes()


def airflow_requirements(repo_root: Path) -> bytes:
    lines = ["# the kit's run-time requirements", *kit_requirements()]
    team = repo_root / "requirements.txt"
    if team.is_file():
        lines += ["# the team's requirements.txt", team.read_text()]
    return ("\n".join(lines) + "\n").encode()


def _constraints(repo_root: Path) -> bytes:
    """The team repository's pins (rendered from the kit's); the kit's own in a kit checkout."""
    for candidate in (repo_root / "constraints.txt", assets_dir().parent / "constraints.txt"):
        if candidate.is_file():
            return candidate.read_bytes()
    return b"# no constraints.txt found: versions are resolved at build time\n"


def _stage(context: Path, dockerfile: str, files: dict[str, bytes]) -> tuple[Path, str]:
    """Write a fresh build context; return it with a digest of everything in it."""
    shutil.rmtree(context, ignore_errors=True)
    (context / "certs").mkdir(parents=True)
    digest = hashlib.sha256()
    for name, content in sorted({dockerfile: _asset(dockerfile), **files}.items()):
        (context / name).write_bytes(content)
        digest.update(name.encode() + b"\0" + content + b"\0")
    for script in context.glob("*.sh"):
        script.chmod(0o755)
    return context, digest.hexdigest()


def _hash(digest: str, build_args: dict[str, str]) -> str:
    text = digest + "".join(f"{k}={v}\n" for k, v in sorted(build_args.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    tag: str,
    build_args: dict[str, str],
    progress: Progress,
    target: str | None = None,
) -> None:
    log_path = context.parent / f"{context.name}.build.log"
    t0 = time.monotonic()
    with log_path.open("w") as log:
        for chunk in client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=build_args,
            target=target,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if text := chunk.get("stream"):
                text = ANSI.sub("", text)
                log.write(text)
                if STEP.match(text):
                    progress.info(f"[{time.monotonic() - t0:5.0f}s] {text.strip()[:100]}")
            if error := chunk.get("error"):
                log.write(error + "\n")
                log.flush()
                raise UserError(
                    f"building {tag} failed. Last lines of {log_path}:\n"
                    + "".join(log_path.read_text().splitlines(keepends=True)[-12:]),
                    fix=(
                        "a requirement that does not resolve is fixed in the team's requirements.txt; "
                        "without a reachable registry, build a base image with "
                        "`localdev/debootstrap-base.sh` and set ARIEL_BASE_IMAGE; behind a TLS-intercepting "
                        "proxy set ARIEL_EXTRA_CA_CERTS to its CA file; for a package mirror set "
                        "ARIEL_PIP_INDEX_URL"
                    ),
                )

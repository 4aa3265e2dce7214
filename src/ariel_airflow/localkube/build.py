"""Build the pinned parts once per machine into a cache; rebuild only what a changed pin touches.

Each tools module is built into ``<cache>/<module>-<fingerprint>/``: the fingerprint covers the
module's ``go.mod``, ``go.sum`` and code and the Go version, so a changed pin makes a new folder
and an unchanged one is reused as it is. A build goes to a private folder first and is renamed
into place when it succeeded: an interrupted build never leaves a half cache.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localkube.parts import KUBERNETES, PAUSE_SOURCE, TOOLS_MODULES, ToolsModule

CACHE_ENV_VAR = "ARIEL_CLUSTER_CACHE"
BUILD_RECORD = "build.json"
# Static binaries (CGO_ENABLED=0): no libc to match on the node. No VCS stamp: the tools modules sit
# in the kit's checkout, whose commits do not change what is built.
GO_BUILD = ["go", "build", "-trimpath", "-buildvcs=false"]


def cache_dir() -> Path:
    """``$ARIEL_CLUSTER_CACHE``, else ``$XDG_CACHE_HOME/ariel/cluster`` (``~/.cache/ariel/cluster``)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ariel" / "cluster"


@dataclass
class Binaries:
    """Where each program is, and what building took (0 for what came from the cache)."""

    programs: dict[str, Path] = field(default_factory=dict)
    build_seconds: dict[str, float] = field(default_factory=dict)  # by tools module, this run only

    def __getitem__(self, program: str) -> Path:
        return self.programs[program]


def go_version() -> str:
    if shutil.which("go") is None:
        raise UserError(
            "the Go toolchain is not on PATH: the local Kubernetes is built from its Go modules",
            fix="install Go 1.24 or newer (https://go.dev/doc/install) and make sure `go env GOPROXY` "
            "reaches a Go module proxy",
        )
    return _run(["go", "env", "GOVERSION"], cwd=Path.cwd()).strip()


def build_all(progress: Progress | None = None, cache: Path | None = None) -> Binaries:
    """Every program of the local Kubernetes, built where its pin changed, else from the cache."""
    progress = progress or Progress()
    cache = cache or cache_dir()
    version = go_version()
    binaries = Binaries()
    for module in TOOLS_MODULES:
        folder, seconds = _build_module(module, version, cache, progress)
        binaries.programs.update({name: folder / name for name in module.programs})
        if seconds:
            binaries.build_seconds[module.name] = seconds
    folder, seconds = _build_pause(version, cache, progress)
    binaries.programs["pause"] = folder / "pause"
    if seconds:
        binaries.build_seconds["pause"] = seconds
    return binaries


def _build_module(module: ToolsModule, version: str, cache: Path, progress: Progress) -> tuple[Path, float]:
    folder = cache / f"{module.name}-{module.fingerprint(version)}"
    if (folder / BUILD_RECORD).is_file():
        return folder, 0.0
    programs = ", ".join(module.programs)
    packages = list(module.programs.values())

    def build(staging: Path) -> None:
        env = {**os.environ, "CGO_ENABLED": "0"}
        go_build = [*GO_BUILD, f"-ldflags={module.ldflags()}"]
        if packages == ["."]:  # a main package of the module itself: name the output file
            _run([*go_build, "-o", str(staging / next(iter(module.programs))), "."], cwd=module.dir, env=env)
        else:
            _run([*go_build, "-o", f"{staging}/", *packages], cwd=module.dir, env=env)

    what = f"building {module.name} ({programs}) from tools/{module.name}"
    return folder, _build_into(folder, what, build, progress)


def _build_pause(version: str, cache: Path, progress: Progress) -> tuple[Path, float]:
    folder = cache / f"pause-{KUBERNETES.fingerprint(version)}"
    if (folder / BUILD_RECORD).is_file():
        return folder, 0.0
    if shutil.which("gcc") is None:
        raise UserError(
            "a C compiler is needed for the pods' pause program (Kubernetes' build/pause/linux/pause.c)",
            fix="install one: `apt-get install gcc libc6-dev`",
        )

    def build(staging: Path) -> None:
        source = kubernetes_source() / PAUSE_SOURCE
        flags = ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{pause_version()}"]
        _run(["gcc", *flags, "-o", str(staging / "pause"), str(source)], cwd=staging)

    return folder, _build_into(folder, "building pause from the pinned Kubernetes source", build, progress)


def _build_into(folder: Path, what: str, build: Callable[[Path], None], progress: Progress) -> float:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    t0 = time.monotonic()
    try:
        with progress.step(what, f"built into {folder}"):
            build(staging)
            seconds = round(time.monotonic() - t0, 1)
            (staging / BUILD_RECORD).write_text(json.dumps({"seconds": seconds}))
            shutil.rmtree(folder, ignore_errors=True)  # a folder without its record is half a build
            staging.rename(folder)
        for outdated in folder.parent.glob(f"{folder.name.rsplit('-', 1)[0]}-*"):  # an older pin's build
            if outdated != folder and (outdated / BUILD_RECORD).is_file():
                shutil.rmtree(outdated, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return seconds


@functools.cache
def kubernetes_source() -> Path:
    """The pinned ``k8s.io/kubernetes`` module's source, downloaded into Go's module cache."""
    out = _run(["go", "mod", "download", "-json", "k8s.io/kubernetes"], cwd=KUBERNETES.dir)
    return Path(json.loads(out)["Dir"])


def pause_version() -> str:
    """The pause image's version, as the pinned Kubernetes' own build/pause/Makefile tags it."""
    makefile = (kubernetes_source() / "build/pause/Makefile").read_text()
    match = re.search(r"^TAG \?= (\S+)", makefile, re.MULTILINE)
    if not match:
        raise UserError("no TAG in the pinned Kubernetes' build/pause/Makefile", where=str(KUBERNETES.dir))
    return match[1]


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise UserError(
            f"`{' '.join(argv[:3])} …` failed in {cwd}:\n{tail}",
            fix="check `go env GOPROXY` reaches a Go module proxy and the pins in tools/*/go.mod",
        )
    return result.stdout

"""Images for the local cluster's nodes: built here with Docker, loaded into each node's containerd.

No registry is reachable, so nothing is pulled: an image is built (``docker build``), saved
(``docker save``) and imported into the ``k8s.io`` namespace of every node's containerd, where the
kubelet finds it by its tag (pods use ``imagePullPolicy: Never`` or ``IfNotPresent``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.docker_tools import docker_client
from ariel_airflow.localkube.layout import Node

CONTAINERD_NAMESPACE = "k8s.io"  # where the CRI plugin keeps the kubelet's images


def build_program_image(tag: str, program: Path, *, entrypoint: str) -> None:
    """An image of one static program and nothing else (``FROM scratch``), unless already built."""
    client = docker_client()
    if client.images.list(name=tag):
        return
    with tempfile.TemporaryDirectory(prefix="ariel-image-") as context:
        shutil.copy(program, Path(context) / program.name)
        (Path(context) / "Dockerfile").write_text(
            f'FROM scratch\nCOPY {program.name} {entrypoint}\nENTRYPOINT ["{entrypoint}"]\n'
        )
        client.images.build(path=context, tag=tag, rm=True)


def load_images(
    tags: list[str],
    nodes: tuple[Node, ...],
    workdir: Path,
    *,
    replace: bool = False,
    names: dict[str, str] | None = None,
) -> None:
    """``docker save`` the images once, import them into every node that lacks one (with
    ``replace``, into every node: a rebuilt image keeps its tag); ``names`` gives an image another
    tag on the nodes (Docker's tag: the node's)."""
    client = docker_client()
    workdir.mkdir(parents=True, exist_ok=True)
    for tag in tags:
        missing = [node for node in nodes if replace or (names or {}).get(tag, tag) not in node_images(node)]
        if not missing:
            continue
        archive = workdir / (tag.replace("/", "_").replace(":", "_") + ".tar")
        with open(archive, "wb") as out:
            for chunk in client.images.get(tag).save(named=True):
                out.write(chunk)
        try:
            for node in missing:
                _ctr(node, "images", "import", str(archive))
                if names and tag in names:
                    _ctr(node, "images", "tag", "--force", tag, names[tag])
        finally:
            archive.unlink(missing_ok=True)


def node_images(node: Node) -> set[str]:
    """The image references the node's containerd holds."""
    out = _ctr(node, "images", "list", "--quiet")
    return set(out.split())


def _ctr(node: Node, *args: str) -> str:
    argv = ["ctr", f"--address={node.containerd_socket}", f"--namespace={CONTAINERD_NAMESPACE}", *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(
            f"`ctr {' '.join(args[:2])}` failed on node {node.name}: {result.stderr.strip()}",
            fix=f"read the node's containerd log in {node.dir.parent.parent / 'logs'}",
        )
    return result.stdout

"""The local cluster's PKI: a chain openssl accepts, the identities Kubernetes reads, kept across calls."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ariel_airflow.localkube.pki import Identity, Pki, ensure_pki, write_kubeconfig

IPS = ["192.0.2.2", "10.96.0.1", "127.0.0.1"]
NAMES = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
]
KUBELETS = {"node-a": "192.0.2.2", "node-b": "192.0.2.2"}
CLIENTS = [
    Identity("admin", "ariel-admin", ("system:masters",)),
    Identity("scheduler", "system:kube-scheduler"),
]
SERVERS = ["apiserver", "kubelet-node-a", "kubelet-node-b"]
LEAVES = [
    *SERVERS,
    "apiserver-kubelet-client",
    *[f"kubelet-{n}-client" for n in KUBELETS],
    "admin",
    "scheduler",
]


def make(directory: Path, ips: list[str] = IPS) -> Pki:
    return ensure_pki(directory, apiserver_ips=ips, apiserver_names=NAMES, kubelets=KUBELETS, clients=CLIENTS)


def load(pki: Pki, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.cert(name).read_bytes())


def sans(pki: Pki, name: str, kind: type[x509.GeneralName]) -> list:
    extension = load(pki, name).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return extension.value.get_values_for_type(kind)


def verifies(pki: Pki, name: str, server: bool | None = None) -> bool:
    purpose = "sslserver" if (name in SERVERS if server is None else server) else "sslclient"
    command = ["openssl", "verify", "-purpose", purpose, "-CAfile", str(pki.ca_cert()), str(pki.cert(name))]
    return subprocess.run(command, capture_output=True).returncode == 0


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def changed(before: dict[str, bytes], directory: Path) -> set[str]:
    after = snapshot(directory)
    assert after.keys() == before.keys()
    return {name for name in before if after[name] != before[name]}


def test_every_leaf_chains_to_the_ca_for_its_purpose_only(tmp_path: Path) -> None:
    pki = make(tmp_path / "pki")
    for name in LEAVES:
        assert verifies(pki, name), name
        assert not verifies(pki, name, server=name not in SERVERS), name
    assert load(pki, "ca").subject.rfc4514_string() == "CN=ariel-local-kubernetes-ca"


def test_subjects_and_names_are_what_kubernetes_authenticates(tmp_path: Path) -> None:
    pki = make(tmp_path / "pki")
    assert set(sans(pki, "apiserver", x509.IPAddress)) >= {ipaddress.ip_address(ip) for ip in IPS}
    assert set(sans(pki, "apiserver", x509.DNSName)) >= set(NAMES)
    assert sans(pki, "kubelet-node-a", x509.DNSName) == ["node-a"]
    assert sans(pki, "kubelet-node-a", x509.IPAddress) == [ipaddress.ip_address("192.0.2.2")]
    node_client = load(pki, "kubelet-node-b-client").subject.rfc4514_string()
    assert node_client == "CN=system:node:node-b,O=system:nodes"
    kubelet_client = load(pki, "apiserver-kubelet-client")
    assert kubelet_client.subject.rfc4514_string() == "CN=kube-apiserver-kubelet-client,O=system:masters"
    eku = kubelet_client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_private_keys_are_owner_only(tmp_path: Path) -> None:
    pki = make(tmp_path / "pki")
    assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
    keys = [pki.key(name) for name in [*LEAVES, "ca"]] + [pki.service_account_key]
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    assert b"BEGIN PUBLIC KEY" in pki.service_account_pub.read_bytes()
    assert not list(pki.dir.glob(".*")), "temporary files left behind"


def test_second_call_keeps_files_and_remakes_only_what_is_missing(tmp_path: Path) -> None:
    pki = make(tmp_path / "pki")
    before = snapshot(pki.dir)
    assert changed(before, make(pki.dir).dir) == set()
    pki.cert("kubelet-node-a").unlink()
    assert changed(before, make(pki.dir).dir) == {"kubelet-node-a.crt", "kubelet-node-a.key"}
    assert verifies(pki, "kubelet-node-a")
    # A new machine address reissues the serving certificate that names it, nothing else.
    before = snapshot(pki.dir)
    assert changed(before, make(pki.dir, [*IPS, "192.0.2.9"]).dir) == {"apiserver.crt", "apiserver.key"}
    assert ipaddress.ip_address("192.0.2.9") in sans(pki, "apiserver", x509.IPAddress)


def test_lost_ca_key_reissues_everything(tmp_path: Path) -> None:
    pki = make(tmp_path / "pki")
    before = snapshot(pki.dir)
    pki.key("ca").unlink()
    make(pki.dir)
    assert changed(before, pki.dir) >= {f"{name}.crt" for name in ["ca", *LEAVES]}
    assert all(verifies(pki, name) for name in LEAVES)


def test_kubeconfig_names_files_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative PKI directory must still give paths valid from anywhere
    pki, server, path = make(Path("pki")), "https://192.0.2.2:6443", tmp_path / "kc" / "admin.yaml"
    assert write_kubeconfig(path, server=server, pki=pki, user="admin", cert_name="admin") == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config, name, pki_dir = yaml.safe_load(path.read_text()), "ariel-local", Path.cwd() / "pki"
    assert config["current-context"] == name
    assert config["contexts"] == [{"name": name, "context": {"cluster": name, "user": "admin"}}]
    cluster = {"server": server, "certificate-authority": str(pki_dir / "ca.crt")}
    assert config["clusters"] == [{"name": name, "cluster": cluster}]
    files = {"client-certificate": str(pki_dir / "admin.crt"), "client-key": str(pki_dir / "admin.key")}
    assert config["users"] == [{"name": "admin", "user": files}]
    try:
        from kubernetes import client
        from kubernetes import config as kube_config
    except ImportError:
        return  # the YAML checks above stand in for the official loader
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert (configuration.host, configuration.cert_file) == (server, str(pki.cert("admin")))

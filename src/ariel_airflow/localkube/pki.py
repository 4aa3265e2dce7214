"""Certificates and kubeconfigs of the one-machine cluster, as ``hack/local-up-cluster.sh`` makes them.

One CA signs the API server's serving certificate, a serving and a client certificate per kubelet, the
API server's client certificate towards the kubelets and one client certificate per control-plane
identity. The service-account key pair is separate (the API server signs tokens with it). Everything
is kept across calls so a restarted cluster keeps its identities; a file is (re)made only when it is
missing, no longer matches what is asked (an address changed, say), is not signed by the current CA, or
is about to expire. Without a usable CA everything is reissued.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
CA_COMMON_NAME = "ariel-local-kubernetes-ca"
SERVICE_ACCOUNT = "service-account"
CLUSTER = "ariel-local"
VALIDITY = dt.timedelta(days=3650)
RENEW_BEFORE = dt.timedelta(days=30)  # reissue rather than let a long-lived local cluster hit expiry
BACKDATE = dt.timedelta(hours=1)  # tolerate small clock differences between processes and containers

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pki:
    """Where the cluster's certificates and keys are: ``<dir>/<name>.crt`` and ``<dir>/<name>.key``."""

    dir: Path

    def ca_cert(self) -> Path:
        return self.cert(CA_NAME)

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def service_account_key(self) -> Path:
        """RSA private key the API server signs service-account tokens with (and the controller-manager)."""
        return self.key(SERVICE_ACCOUNT)

    @property
    def service_account_pub(self) -> Path:
        return self.dir / f"{SERVICE_ACCOUNT}.pub"


@dataclass(frozen=True)
class Identity:
    """A client certificate: the file stem, and the user and groups Kubernetes authenticates it as."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Leaf:
    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False  # serverAuth, else clientAuth
    dns_names: tuple[str, ...] = ()
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()

    def subject(self) -> x509.Name:
        return _name(self.common_name, self.organizations)

    def sans(self) -> set[x509.GeneralName]:
        return {x509.DNSName(d) for d in self.dns_names} | {x509.IPAddress(ip) for ip in self.ips}

    def eku(self) -> list[x509.ObjectIdentifier]:
        return [ExtendedKeyUsageOID.SERVER_AUTH if self.server else ExtendedKeyUsageOID.CLIENT_AUTH]


def ensure_pki(
    directory: Path,
    *,
    apiserver_ips: list[str],
    apiserver_names: list[str],
    kubelets: dict[str, str],
    clients: list[Identity],
    servers: dict[str, tuple[str, ...]] | None = None,
) -> Pki:
    """Make whatever of the cluster's certificates and keys is missing or stale in ``directory``
    (``servers``: more serving certificates, by file stem, for the host names listed)."""
    pki = Pki(directory.absolute())
    leaves = [
        _Leaf(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=tuple(apiserver_names),
            ips=tuple(ipaddress.ip_address(ip) for ip in apiserver_ips),
        ),
        _Leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
    ]
    for node, ip in kubelets.items():
        leaves.append(
            _Leaf(f"kubelet-{node}", node, server=True, dns_names=(node,), ips=(ipaddress.ip_address(ip),))
        )
        leaves.append(_Leaf(f"kubelet-{node}-client", f"system:node:{node}", ("system:nodes",)))
    leaves += [_Leaf(c.name, c.common_name, tuple(c.organizations)) for c in clients]
    leaves += [_Leaf(name, names[0], server=True, dns_names=names) for name, names in (servers or {}).items()]
    _check_names([leaf.name for leaf in leaves])

    pki.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.dir.chmod(0o700)  # mkdir's mode is filtered by the umask and ignored for an existing directory
    now = dt.datetime.now(dt.UTC)
    ca_cert, ca_key = _ensure_ca(pki, now)
    for leaf in leaves:
        _ensure_leaf(pki, leaf, ca_cert, ca_key, now)
    _ensure_service_account(pki)
    return pki


def write_kubeconfig(path: Path, *, server: str, pki: Pki, user: str, cert_name: str) -> Path:
    """A kubeconfig for ``user`` with the client certificate ``cert_name``, as file paths (not data)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert().absolute())},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.cert(cert_name).absolute()),
                    "client-key": str(pki.key(cert_name).absolute()),
                },
            }
        ],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": CLUSTER,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)
    return path


def _check_names(names: list[str]) -> None:
    # Two certificates with one file stem would overwrite each other on every call.
    reserved = {CA_NAME, SERVICE_ACCOUNT}
    seen: set[str] = set()
    for name in names:
        if not name or "/" in name or name.startswith(".") or name in reserved or name in seen:
            raise ValueError(f"certificate name {name!r} is empty, reserved, a path or used twice")
        seen.add(name)


def _ensure_ca(pki: Pki, now: dt.datetime) -> tuple[x509.Certificate, _PrivateKey]:
    existing = _load_pair(pki, CA_NAME)
    if existing is not None:
        cert, key = existing
        if cert.subject == _name(CA_COMMON_NAME) and not _expiring(cert, now):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(CA_COMMON_NAME)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(subject, key, now, now + VALIDITY)
        .issuer_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a crash in between leaves a pair that does not match, which the next call remakes.
    _write_atomic(pki.key(CA_NAME), _private_pem(key), 0o600)
    _write_atomic(pki.ca_cert(), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _ensure_leaf(
    pki: Pki, leaf: _Leaf, ca_cert: x509.Certificate, ca_key: _PrivateKey, now: dt.datetime
) -> None:
    existing = _load_pair(pki, leaf.name)
    if existing is not None and _is_current(existing[0], leaf, ca_cert, now):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(leaf.subject(), key, now, min(now + VALIDITY, ca_cert.not_valid_after_utc))
        .issuer_name(ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(leaf.eku()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if leaf.sans():
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sorted(leaf.sans(), key=str)), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_atomic(pki.key(leaf.name), _private_pem(key), 0o600)
    _write_atomic(pki.cert(leaf.name), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _ensure_service_account(pki: Pki) -> None:
    key: rsa.RSAPrivateKey | None = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        loaded = serialization.load_pem_private_key(pki.service_account_key.read_bytes(), password=None)
        if isinstance(loaded, rsa.RSAPrivateKey):
            key = loaded
    if key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_atomic(pki.service_account_key, _private_pem(key), 0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Derived from the key, so rewritten only when it differs: tokens already issued stay valid.
    with contextlib.suppress(OSError):
        if pki.service_account_pub.read_bytes() == public:
            return
    _write_atomic(pki.service_account_pub, public, 0o644)


def _load_pair(pki: Pki, name: str) -> tuple[x509.Certificate, _PrivateKey] | None:
    """The certificate and key ``name`` if both are readable and belong together."""
    try:
        cert = x509.load_pem_x509_certificate(pki.cert(name).read_bytes())
        key = serialization.load_pem_private_key(pki.key(name).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    # A key without its certificate (or the reverse) is what a crash between the two writes leaves.
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    return cert, key


def _is_current(cert: x509.Certificate, leaf: _Leaf, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = set()
    try:
        eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return False
    matches = cert.subject == leaf.subject() and sans == leaf.sans() and eku == leaf.eku()
    return matches and not _expiring(cert, now)


def _expiring(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc - now < RENEW_BEFORE


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, key: _PrivateKey, start: dt.datetime, end: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(end)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # A temporary file beside the target, then a rename: readers never see a half-written key or config,
    # and a key never exists, even briefly, with wider permissions than ``mode``.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

"""The network the Azure stand-ins live on: a test CA and a CONNECT proxy that routes Azure's hostnames.

Clients reach a stand-in under the real hostname (``login.microsoftonline.com``,
``kv-recon-test.vault.azure.net``) through ``ConnectProxy``, as through a company's proxy: set
HTTPS_PROXY to ``proxy.url``. The stand-ins' certificates are issued for those hostnames by
``TestCA``; point SSL_CERT_FILE and REQUESTS_CA_BUNDLE at ``ca.ca_file``, as for a company's
TLS-intercepting proxy. A tunnel to a host no stand-in serves is refused: nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class TestCA:
    """A CA made at start (its certificate in ``ca_file``) that issues the stand-ins' certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Azure stand-ins test CA")])
        cert = (
            _builder(self._name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = self.folder / "standin-ca.pem"
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, host: str) -> tuple[Path, Path]:
        """A server certificate for ``host`` (a name, a wildcard like ``*.vault.azure.net`` as Azure's
        own, or an IP address) and its key: their PEM files."""
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alt_name = x509.DNSName(host)
        cert = (
            _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), key.public_key(), self._name)
            .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = self.folder / host.replace("*", "wildcard")
        cert_file, key_file = Path(f"{stem}.pem"), Path(f"{stem}.key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context with a certificate for ``host`` (see ``issue``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.issue(host))
        return context


def _builder(
    subject: x509.Name, public_key: object, issuer: x509.Name | None = None
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def https_server(context: ssl.SSLContext, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A started HTTPS server on a free local port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class ConnectProxy:
    """A CONNECT proxy whose tunnels go to the stand-in ``route``d for the host they name."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, int]] = {}  # host pattern (fnmatch) -> stand-in address
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _tunnel_handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def route(self, host_pattern: str, address: tuple[str, int]) -> None:
        self.routes[host_pattern] = address

    def address_of(self, host: str) -> tuple[str, int] | None:
        return next((a for p, a in self.routes.items() if fnmatch.fnmatch(host.lower(), p)), None)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _tunnel_handler(proxy: ConnectProxy) -> type[BaseHTTPRequestHandler]:
    class Tunnel(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:  # noqa: N802 - the http.server API
            address = proxy.address_of(self.path.rpartition(":")[0])
            if address is None:
                self.send_error(502, f"no stand-in serves {self.path}")
                return
            upstream = socket.create_connection(address)
            self.send_response(200, "Connection established")
            self.end_headers()
            threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True).start()
            _pipe(self.connection, upstream)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Tunnel


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

"""Small network stand-ins on 127.0.0.1 for the transport tests (not a test module):

* :class:`ForwardProxy`: an HTTP forward proxy (absolute-form requests and CONNECT
  tunnels) that records what it forwarded and can answer the first N matching requests
  with an injected error instead;
* :class:`TlsRelay`: terminates TLS with a certificate for 127.0.0.1 signed by a test CA
  and relays the plain bytes to a target port (an https front for the emulator);
* :func:`make_ca`: that CA and certificate, written as PEM files.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import ipaddress
import json
import select
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
        "trailer", "transfer-encoding", "upgrade"}


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Relay bytes both ways until either side closes."""
    socks = [a, b]
    try:
        while True:
            readable, _, _ = select.select(socks, [], [], 30)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class ForwardProxy:
    """``http://127.0.0.1:<port>`` as HTTP_PROXY / HTTPS_PROXY.

    ``seen`` lists ``(method, url)`` of every forwarded request (CONNECT as
    ``("CONNECT", "host:port")``). ``inject(path_part, status, error_type, n)`` answers
    the next ``n`` requests whose URL contains ``path_part`` with that error."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._faults: list[list] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_CONNECT(self):
                host, _, port = self.path.partition(":")
                proxy._record("CONNECT", self.path)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                _pipe(self.connection, upstream)
                self.close_connection = True

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                url = self.path
                proxy._record(self.command, url)
                fault = proxy._fault_for(url)
                if fault is not None:
                    status, etype = fault
                    data = json.dumps({"Type": "Service", "message": f"injected {etype}"}).encode()
                    self.send_response(status)
                    self.send_header("x-amzn-ErrorType", etype)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                parts = urlsplit(url)
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=120)
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _record(self, method: str, url: str) -> None:
        with self._lock:
            self.seen.append((method, url))

    def inject(self, path_part: str, status: int, error_type: str, n: int) -> None:
        with self._lock:
            self._faults.append([path_part, status, error_type, n])

    def _fault_for(self, url: str) -> tuple[int, str] | None:
        with self._lock:
            for fault in self._faults:
                if fault[0] in url and fault[3] > 0:
                    fault[3] -= 1
                    return fault[1], fault[2]
        return None

    def invocations(self) -> list[str]:
        with self._lock:
            return [u for m, u in self.seen if m == "POST" and u.endswith("/invocations")]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TlsRelay:
    """``https://127.0.0.1:<port>`` in front of a plain TCP ``target_port``."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    tls = ctx.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                upstream = socket.create_connection(("127.0.0.1", target_port), timeout=10)
                _pipe(tls, upstream)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def make_ca(directory: Path, *, key_identifiers: bool = True) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for IP 127.0.0.1: (ca.pem, cert.pem, key.pem).

    Both are RFC 5280 profile certificates, as Python 3.13's default context insists
    (``VERIFY_X509_STRICT``): the CA has a critical basicConstraints CA:TRUE, a critical
    keyUsage and a subjectKeyIdentifier; the leaf has basicConstraints CA:FALSE, a
    critical keyUsage, serverAuth, the IP in its subjectAltName and an
    authorityKeyIdentifier that names the CA's key. ``key_identifiers=False`` leaves both
    key identifiers out: a chain that OpenSSL accepts by default and rejects when strict
    ("Missing Authority Key Identifier"), for tests of which checks are in force."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    def key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=digital_signature, key_cert_sign=cert_sign,
                             crl_sign=cert_sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, encipher_only=False, decipher_only=False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambdaflow test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(digital_signature=True, cert_sign=True), critical=True)
    )
    if key_identifiers:
        ca = ca.add_extension(ca_ski, critical=False)
    ca_cert = ca.sign(ca_key, hashes.SHA256())
    key = ec.generate_private_key(ec.SECP256R1())
    ip = ipaddress.ip_address("127.0.0.1")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip)]), critical=False)
    )
    if key_identifiers:
        leaf_ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
        cert = cert.add_extension(leaf_ski, critical=False).add_extension(aki, critical=False)
    leaf_cert = cert.sign(ca_key, hashes.SHA256())
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths

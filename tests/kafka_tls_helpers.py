"""A TLS-only Kafka for tests: tansu behind a small asyncio TLS terminator, and a throwaway PKI.

tansu 0.6.0 cannot serve TLS itself (it refuses `--cert` with `--key`), so a terminator
accepts TLS (optionally requiring a client certificate: mutual TLS) and pipes plain bytes to
tansu, which advertises the terminator's address; every client then has to speak TLS.
Certificates come from the `openssl` command line (no extra Python dependency).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from streamer.demo.services import tansu_binary
from tests.ports import start_listening


@dataclass(frozen=True)
class Pki:
    """PEM files of a CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verifying with it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(cwd: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


def _leaf(cwd: Path, name: str, ext: str) -> None:
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=cwd)


def make_pki(root: Path) -> Pki:
    """A fresh CA with a server certificate (127.0.0.1, localhost) and a client certificate."""
    root.mkdir(parents=True, exist_ok=True)
    _ca(root, "ca")
    _ca(root, "other-ca")
    _leaf(root, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    _leaf(root, "client", "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    return Pki(root / "ca.pem", root / "server.pem", root / "server.key", root / "client.pem",
               root / "client.key", root / "other-ca.pem")


class TlsTerminator:
    """TLS on `port`, plain TCP to 127.0.0.1:`upstream`; one thread per connection.

    Blocking sockets on purpose: a failed server-side handshake (no or an unknown client
    certificate) then sends its TLS alert to the client, as a Kafka broker does; asyncio's TLS
    server drops the connection without it.
    """

    def __init__(self, upstream: int, pki: Pki, require_client_cert: bool) -> None:
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(pki.ca)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()

    def start(self) -> TlsTerminator:
        """Accept connections in a daemon thread."""
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):
            _linger_close(client)  # the handshake failed; let its alert reach the client
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream), 5)
        except OSError:
            tls.close()
            return
        with contextlib.suppress(OSError), tls, upstream:
            _pump(tls, upstream, self.stopped)

    def stop(self) -> None:
        """Stop accepting; open connections end with their peers."""
        self.stopped.set()
        self.listener.close()


def _linger_close(sock: socket.socket) -> None:
    """Close without a reset: unread client bytes would make the kernel drop the alert."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        while sock.recv(65536):
            pass
    sock.close()


def _pump(tls: ssl.SSLSocket, plain: socket.socket, stopped: threading.Event) -> None:
    """Copy both ways from one thread (an SSL socket must not be used by two at once)."""
    while not stopped.is_set():
        ready = [tls] if tls.pending() else select.select([tls, plain], [], [], 0.5)[0]
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (plain if sock is tls else tls).sendall(data)


@dataclass
class TlsKafka:
    """tansu advertising a TLS terminator in front of it."""

    tansu: subprocess.Popen[bytes]
    terminator: TlsTerminator
    pki: Pki

    @property
    def bootstrap(self) -> str:
        """What clients connect to: the TLS port."""
        return f"127.0.0.1:{self.terminator.port}"

    def env(self, mutual: bool = True) -> dict[str, str]:
        """Settings of a client of this broker (with its client certificate when mutual)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
               "KAFKA_SSL_CAFILE": str(self.pki.ca)}
        if mutual:
            env.update(KAFKA_SSL_CERTFILE=str(self.pki.client_cert),
                       KAFKA_SSL_KEYFILE=str(self.pki.client_key))
        return env

    def stop(self) -> None:
        """Stop the terminator and the broker."""
        self.terminator.stop()
        self.tansu.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.tansu.wait(10)
        if self.tansu.poll() is None:
            self.tansu.kill()


def start_tls_kafka(root: Path, require_client_cert: bool = True) -> TlsKafka:
    """PKI, a terminator, and tansu (plain, loopback) advertising the terminator's address."""
    pki = make_pki(root / "pki")
    terminator = TlsTerminator(0, pki, require_client_cert)  # upstream: tansu's port, below
    advertised = f"tcp://127.0.0.1:{terminator.port}"

    def spawn(plain: int) -> subprocess.Popen[bytes]:
        terminator.upstream = plain
        with open(root / "tansu.log", "wb") as log:
            return subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{plain}",
                 "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": "warn"},
            )

    tansu = start_listening(spawn, root / "tansu.log", 20)[0]
    return TlsKafka(tansu, terminator.start(), pki)

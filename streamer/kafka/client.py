"""Kafka connection settings for every client the project makes: TLS, SASL, replication.

The one place that turns Settings into what aiokafka (consumers, producers, the admin client)
and Faust (`broker_credentials`) take, so no client can be built without them. Faust hands
its credentials to aiokafka in `credentials_to_aiokafka_auth`
(faust/transport/drivers/aiokafka.py), which maps `SASLCredentials` to the same
`security_protocol` / `sasl_mechanism` / `sasl_plain_*` / `ssl_context` keywords used here
(SCRAM included: aiokafka's `sasl_plain_*` carry SCRAM credentials too).

`preflight` opens one connection the way the clients will, so that a wrong CA, a bad client
certificate or rejected credentials end the start with one line instead of the clients'
endless "Unable to bootstrap" retries. A broker that is just not up yet stays a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from typing import Any

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from streamer.errors import ConfigError, StreamerError
from streamer.settings.model import Settings


class KafkaSecurityError(StreamerError):
    """Raised when Kafka refuses the TLS handshake or the SASL credentials (retrying cannot help)."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for SSL / SASL_SSL (system trust store unless KAFKA_SSL_CAFILE), else None.

    Raises ConfigError naming the file when a PEM file cannot be loaded.
    """
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("KAFKA_SSL_CAFILE", f"not a usable PEM CA file ({exc})") from None
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError("KAFKA_SSL_CERTFILE", "with KAFKA_SSL_KEYFILE: not a usable PEM "
                              f"certificate and key ({exc})") from None
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keywords for AIOKafkaConsumer / AIOKafkaProducer / AIOKafkaAdminClient."""
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        out["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        out["sasl_mechanism"] = settings.kafka_sasl_mechanism
        out["sasl_plain_username"] = settings.kafka_sasl_username
        out["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return out


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust `broker_credentials` equal to client_kwargs (None for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if proto == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    credentials = faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )
    assert credentials.protocol.value == proto  # SASL_SSL exactly when a context is given
    return credentials


def _hosts(settings: Settings) -> list[tuple[str, int]]:
    pairs = [h.strip().rsplit(":", 1) for h in settings.kafka_bootstrap_servers.split(",")]
    return [(host.strip("[]"), int(port)) for host, port in pairs]


def _security_failure(exc: BaseException, sasl: bool) -> str | None:
    """Why a connection attempt failed for good (TLS or auth), or None when a retry may help."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc
        return f"TLS certificate verification failed ({why}); check KAFKA_SSL_CAFILE"
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "reason", None) or exc
        return (f"TLS handshake failed ({why}); check KAFKA_SECURITY_PROTOCOL "
                "and KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE")
    if not sasl or isinstance(exc, OSError | TimeoutError) or (
            isinstance(exc, KafkaError) and exc.retriable):
        return None
    # Non-retriable Kafka errors (UnsupportedSaslMechanism, SaslAuthenticationFailed) and the
    # parse errors aiokafka's SCRAM client raises on a server "e=" reply (KeyError 'v').
    if isinstance(exc, KeyError | ValueError):
        detail = "the broker rejected the SCRAM login: no valid server signature in its reply"
    else:
        detail = type(exc).__name__
        described = getattr(exc, "description", None) if isinstance(exc, KafkaError) else str(exc)
        if described:
            detail = f"{detail}: {described}"
    return (f"SASL authentication failed ({detail}); check KAFKA_SECURITY_PROTOCOL, "
            "KAFKA_SASL_MECHANISM and KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD")


async def preflight(settings: Settings, timeout_s: float = 15.0) -> None:
    """Connect to the first bootstrap server as the clients will; KafkaSecurityError if refused.

    Transient failures (refused, timeouts) are left to the caller's retry loop: they return.
    """
    host, port = _hosts(settings)[0]
    proto = settings.kafka_security_protocol
    kwargs = client_kwargs(settings)
    try:
        if "ssl_context" in kwargs:
            await asyncio.wait_for(_tls_probe(host, port, kwargs["ssl_context"]), timeout_s)
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **kwargs), timeout_s)
    except Exception as exc:
        reason = _security_failure(exc, proto.startswith("SASL_"))
        if reason is None:
            return
        raise KafkaSecurityError(f"Kafka {host}:{port} ({proto}): {reason}") from None
    with contextlib.suppress(Exception):
        conn.close()


# ApiVersions v0, correlation id 1, client id "streamer-preflight": the smallest valid request.
_CLIENT_ID = b"streamer-preflight"
_API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 1, len(_CLIENT_ID)) + _CLIENT_ID


async def _tls_probe(host: str, port: int, context: ssl.SSLContext) -> None:
    """Handshake and one request/response over TLS, so a refused client certificate shows.

    A TLS 1.3 server rejects a missing or unknown client certificate only after the client's
    handshake completed; aiokafka then just sees a closed connection. Reading the answer here
    raises the ssl.SSLError naming the alert instead.
    """
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    try:
        writer.write(struct.pack(">i", len(_API_VERSIONS_V0)) + _API_VERSIONS_V0)
        await writer.drain()
        await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return  # closed without a TLS alert: not a certificate problem, a retry may help
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

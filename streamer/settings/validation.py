"""Configuration errors for people: pydantic's messages rephrased, the file line of a value,
and the checks of the Kafka PEM files that need no network (so a bad file never looks like an
outage)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from streamer.errors import ConfigError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from streamer.settings.file import FileValues
    from streamer.settings.model import Settings

# pydantic error type -> the rule in words ({...}: the error's context).
_RULES = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false (also 1/0, yes/no, on/off)",
    "string_type": "must be text",
    "missing": "must be set",
}
# Settings whose bounds are better said as a range.
_RANGES = {"streamer_web_port": "must be a port number in 1..65535"}


def _shown(value: object) -> str:
    """How a rejected value is echoed: repr, URL passwords masked."""
    from streamer.redaction import mask_url

    return repr(mask_url(value) if isinstance(value, str) and "://" in value else value)


def field_error(err: ErrorDetails) -> ConfigError:
    """One pydantic error as a ConfigError naming the variable, in words."""
    name = str(err["loc"][0]) if err["loc"] else "configuration"
    rule = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in _RULES:
        rule = _RULES[err["type"]].format(**err.get("ctx", {}))
    if name in _RANGES and err["type"] in ("greater_than", "less_than"):
        rule = _RANGES[name]
    return ConfigError(name.upper(), f"{rule} (got {_shown(err.get('input'))})")


def located(error: ConfigError, file: FileValues | None) -> ConfigError:
    """The error with ` (PATH line N)` added when its variable was set in the config file."""
    if file is None or error.variable not in file.lines:
        return error
    return ConfigError(error.variable, f"{error.rule} ({file.path} line {file.lines[error.variable]})")


def pem_errors(settings: Settings) -> list[ConfigError]:
    """The Kafka CA / client certificate and key files load as PEM (only with SSL / SASL_SSL)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return []
    errors = []
    context = ssl.create_default_context()
    if settings.kafka_ssl_cafile:
        try:
            context.load_verify_locations(cafile=settings.kafka_ssl_cafile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.append(ConfigError("KAFKA_SSL_CAFILE", f"{settings.kafka_ssl_cafile}: not a "
                                      f"usable PEM CA file ({_reason(exc)})"))
    if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
        try:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.append(ConfigError("KAFKA_SSL_CERTFILE", f"{settings.kafka_ssl_certfile} with "
                                      f"KAFKA_SSL_KEYFILE {settings.kafka_ssl_keyfile}: not a "
                                      f"usable PEM certificate and key ({_reason(exc)})"))
    return errors


def _reason(exc: BaseException) -> Any:
    """The short reason of an ssl/OS error (no errno prefix)."""
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc

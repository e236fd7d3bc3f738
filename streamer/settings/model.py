"""Settings: the only reader of the environment; validated once, frozen, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamer.errors import ConfigError, raise_all
from streamer.redaction import mask_url
from streamer.settings.file import overlay, read_config_file
from streamer.settings.redis_url import parse_redis_url
from streamer.settings.validation import field_error as _field_error
from streamer.settings.validation import located, pem_errors

_POSITIVE = Field(gt=0, strict=False)
# Settings that take one of a few words: field -> the words (the error message names them).
_WORDS = {"streamer_table_store": ("rocksdb", "memory"), "job_trending_count": ("events", "people"),
          "job_suggestion_fallback": ("popular", "none"), "log_format": ("text", "json")}
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _check_port(value: str) -> None:
    """Raise ValueError when a URL's port is not a number in 1..65535."""
    try:
        port = urlsplit(value).port
    except ValueError:
        raise ValueError("port must be a number in 1..65535") from None
    if port == 0:
        raise ValueError("port must be a number in 1..65535")


class Settings(BaseSettings):
    """Every variable of the contract, with its default; field name = lower-case env name."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    redis_url: str = "redis://127.0.0.1:6379/0"
    clickhouse_url: str = ""  # empty = embedded chDB in STREAMER_DATA_DIR/clickhouse
    clickhouse_database: str = "nova"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""  # PEM; empty = the system trust store (with SSL / SASL_SSL)
    kafka_ssl_certfile: str = ""  # PEM client certificate (mutual TLS), with KAFKA_SSL_KEYFILE
    kafka_ssl_keyfile: str = ""
    kafka_replication_factor: int = Field(default=1, gt=0)
    kafka_events_topic: str = "nova.engagement.events"
    kafka_dlq_topic: str = "nova.engagement.events.dlq"
    streamer_app_id: str = "nova-streamer"
    streamer_data_dir: Path = Path("./.streamer")
    streamer_web_port: int = Field(default=6066, gt=0, lt=65536)
    job_trending_interval_sec: int = Field(default=60, gt=0)
    job_trending_window_hours: int = Field(default=1, gt=0)
    job_trending_topk: int = Field(default=50, gt=0)
    # Counting people (streamer/core/people.py): what a post's counters count, and the distinct
    # accounts (any type) a listed post needs. Restart-only: the stream state depends on them.
    job_trending_count: str = "events"  # events | people
    job_trending_min_people: int = Field(default=1, gt=0)
    job_suggestion_interval_sec: int = Field(default=600, gt=0)
    job_suggestion_batch_size: int = Field(default=100, gt=0)
    job_suggestions_per_user: int = Field(default=20, gt=0)
    job_ch_timeout_ms: int = Field(default=10000, gt=0)
    job_redis_pool_size: int = Field(default=10, gt=0)
    job_max_concurrent: int = Field(default=2, gt=0)
    job_reconcile_interval_sec: int = Field(default=600, gt=0)
    job_suggestion_active_days: int = Field(default=7, gt=0)
    # Suggestions at scale: a full run every N runs (incremental in between), users per
    # ClickHouse query, shards a run is split into (claimed by replicas), and a cap on the
    # out-degree of an intermediary account (0 = off: exact).
    job_suggestion_full_every: int = Field(default=12, gt=0)
    job_suggestion_block_users: int = Field(default=1000, gt=0)
    job_suggestion_shards: int = Field(default=16, gt=0)
    job_suggestion_degree_cap: int = Field(default=0, ge=0)
    # Lists shorter than JOB_SUGGESTIONS_PER_USER: `popular` tops them up with the most-followed
    # accounts (new users get a list), `none` leaves them short.
    job_suggestion_fallback: str = "none"
    # Stream-mode knobs beyond the contract.
    streamer_table_store: str = "rocksdb"  # rocksdb | memory
    streamer_clickhouse_sink: bool = True
    streamer_sink_batch_size: int = Field(default=100_000, gt=0)  # events per insert, at most
    streamer_sink_batch_bytes: int = Field(default=16 << 20, gt=0)  # message bytes per batch
    streamer_sink_flush_ms: int = Field(default=1000, gt=0)
    streamer_topic_partitions: int = Field(default=4, gt=0)
    streamer_fallback_after_sec: int = Field(default=180, gt=0)
    streamer_start_timeout_sec: int = Field(default=45, gt=0)  # a start still unfinished then fails
    # Consumer-group timings (Faust broker_*). A restart after kill -9 waits for the dead
    # member's session (Kafka) or the rebalance timeout (tansu): measured 61 s with 60/30,
    # 25 s with 20/10. Heartbeats run in the consumer's own thread; tests shorten these further.
    streamer_rebalance_timeout_sec: int = Field(default=20, gt=0)
    streamer_session_timeout_sec: int = Field(default=10, gt=0)
    streamer_heartbeat_interval_sec: int = Field(default=3, gt=0)
    streamer_commit_interval_ms: int = Field(default=2800, gt=0)
    reconcile_drift_threshold: float = Field(default=0.0, ge=0)
    reconcile_drift_runs: int = Field(default=2, gt=0)
    reconcile_min_overlap: float = Field(default=1.0, ge=0, le=1)
    log_level: str = "INFO"
    log_format: str = "text"  # text | json
    streamer_config_file: str = ""  # KEY=VALUE file over the environment (streamer/settings/file.py)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        parse_redis_url(value)  # one server, Sentinel or Cluster (streamer/settings/redis_url.py)
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_scheme(cls, value: str) -> str:
        if value == "":
            return value
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname:
            _check_port(value)
            return value
        if parts.scheme == "chdb" and not parts.netloc and parts.path.startswith("/"):
            return value
        raise ValueError("must be http(s)://user:pass@host:port or chdb:///absolute/path")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",")]
        if not all(h and ":" in h and h.rsplit(":", 1)[1].isdigit() for h in hosts):
            raise ValueError("must be a comma-separated list of host:port")
        return value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism")
    @classmethod
    def _kafka_choice(cls, value: str, info: Any) -> str:
        choices = KAFKA_PROTOCOLS if info.field_name == "kafka_security_protocol" else (
            KAFKA_SASL_MECHANISMS)
        if value.strip().upper() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value.strip().upper()

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _pem_file(cls, value: str) -> str:
        if value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            raise ValueError("must be a readable PEM file")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        """Combinations of the Kafka security variables; raises ConfigError(s) naming each."""
        proto = self.kafka_security_protocol
        sasl = proto.startswith("SASL_")
        errors: list[ConfigError] = []
        for name, value in (("kafka_sasl_username", self.kafka_sasl_username),
                            ("kafka_sasl_password", self.kafka_sasl_password.get_secret_value())):
            if sasl and not value:
                errors.append(ConfigError(name.upper(),
                                          f"must be set with KAFKA_SECURITY_PROTOCOL={proto}"))
            if value and not sasl:
                errors.append(ConfigError(name.upper(), "needs KAFKA_SECURITY_PROTOCOL="
                                          f"SASL_PLAINTEXT or SASL_SSL (got {proto})"))
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            if getattr(self, name) and not proto.endswith("SSL"):
                errors.append(ConfigError(name.upper(), "needs KAFKA_SECURITY_PROTOCOL=SSL or "
                                          f"SASL_SSL (got {proto})"))
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            missing = "kafka_ssl_keyfile" if self.kafka_ssl_certfile else "kafka_ssl_certfile"
            errors.append(ConfigError(missing.upper(), "must be set: KAFKA_SSL_CERTFILE and "
                                      "KAFKA_SSL_KEYFILE go together (mutual TLS)"))
        raise_all(errors)
        return self

    @field_validator("clickhouse_database")
    @classmethod
    def _db_name(cls, value: str) -> str:
        if not value or not value.replace("_", "").isalnum():
            raise ValueError("must be a non-empty identifier (letters, digits, _)")
        return value

    @field_validator(*_WORDS)
    @classmethod
    def _one_of_words(cls, value: str, info: Any) -> str:
        words = _WORDS[info.field_name]
        if value not in words:
            raise ValueError(f"must be {' or '.join(repr(w) for w in words)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    # ---- derived values -------------------------------------------------------------
    @property
    def trending_ttl_ms(self) -> int:
        """Trending TTL is derived: 1.5 x the publish interval."""
        return self.job_trending_interval_sec * 1500

    @property
    def suggestions_ttl_s(self) -> int:
        """Suggestions TTL is derived: 2 x the job interval."""
        return self.job_suggestion_interval_sec * 2

    @property
    def window_minutes(self) -> int:
        """Window length in minutes."""
        return self.job_trending_window_hours * 60

    @property
    def clickhouse_dsn(self) -> str:
        """Explicit URL, or the embedded chDB directory as an absolute chdb:// DSN."""
        if self.clickhouse_url:
            return self.clickhouse_url
        path = (self.streamer_data_dir / "clickhouse").resolve()
        return f"chdb://{path}"

    @property
    def clickhouse_embedded(self) -> bool:
        """True when ClickHouse is the in-process chDB engine."""
        return self.clickhouse_dsn.startswith("chdb://")

    def masked(self) -> dict[str, Any]:
        """The settings as env-name -> value, with URL passwords masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, str) and "://" in value:
                value = mask_url(value)
            out[name.upper()] = str(value) if isinstance(value, Path) else value
        out["TRENDING_TTL_S (derived)"] = self.trending_ttl_ms / 1000
        out["SUGGESTIONS_TTL_S (derived)"] = self.suggestions_ttl_s
        return out


_INT_FIELDS_MESSAGE = "must be a whole number > 0"
_ZERO_MEANS_OFF = frozenset({"job_suggestion_degree_cap"})  # optional limits: 0 disables


def _shown(value: object) -> str:
    """How a rejected value is echoed: repr, URL passwords masked."""
    return repr(mask_url(value) if isinstance(value, str) and "://" in value else value)


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment and STREAMER_CONFIG_FILE (the file wins for the names
    it sets); raise ConfigError (ConfigErrors: several) naming every bad variable at once, with
    the file and line of a value that came from the file."""
    source = dict(os.environ if env is None else env)
    file_errors: list[ConfigError] = []  # bad lines of the file, reported with the bad values
    file = read_config_file(source, Settings.model_fields, file_errors)
    source = overlay(source, file)
    values: dict[str, Any] = {
        k.lower(): v for k, v in source.items() if k.lower() in Settings.model_fields
    }
    errors = _whole_number_errors(values)
    for error in errors:  # validate the rest with the default in its place (never the env's)
        values[error.variable.lower()] = Settings.model_fields[error.variable.lower()].default
    values.update(overrides)
    settings: Settings | None = None
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        errors += [_field_error(err) for err in exc.errors()]
    except ConfigError as exc:  # the model validator's combinations of Kafka variables
        errors.append(exc)
    if settings is not None and not errors:
        errors += pem_errors(settings)
    order = {name.upper(): i for i, name in enumerate(Settings.model_fields)}
    errors.sort(key=lambda e: order.get(e.variable, -1))  # the order of the README table
    raise_all(file_errors + [located(e, file) for e in errors])
    assert settings is not None
    return settings


def _whole_number_errors(values: dict[str, Any]) -> list[ConfigError]:
    """Integer settings given as text that is not a whole number in range, one error each."""
    errors = []
    for name, raw in values.items():
        if Settings.model_fields[name].annotation is not int or not isinstance(raw, str):
            continue
        stripped = raw.strip()
        lowest = 0 if name in _ZERO_MEANS_OFF else 1
        if not (stripped.isascii() and stripped.isdigit()) or int(stripped) < lowest:
            rule = "must be a whole number >= 0 (0 = off)" if lowest == 0 else _INT_FIELDS_MESSAGE
            errors.append(ConfigError(name.upper(), f"{rule} (got {_shown(raw)})"))
    return errors

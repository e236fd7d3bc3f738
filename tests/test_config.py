"""Settings: every contract variable and default, validation by name, masking, derived TTLs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.errors import ConfigError
from streamer.redaction import mask_url
from streamer.settings.model import Settings, load_settings

CONTRACT_DEFAULTS: dict[str, object] = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CLICKHOUSE_DATABASE": "nova",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "KAFKA_EVENTS_TOPIC": "nova.engagement.events",
    "KAFKA_DLQ_TOPIC": "nova.engagement.events.dlq",
    "STREAMER_APP_ID": "nova-streamer",
    "STREAMER_WEB_PORT": 6066,
    "JOB_TRENDING_INTERVAL_SEC": 60,
    "JOB_TRENDING_WINDOW_HOURS": 1,
    "JOB_TRENDING_TOPK": 50,
    "JOB_SUGGESTION_INTERVAL_SEC": 600,
    "JOB_SUGGESTION_BATCH_SIZE": 100,
    "JOB_SUGGESTIONS_PER_USER": 20,
    "JOB_CH_TIMEOUT_MS": 10000,
    "JOB_REDIS_POOL_SIZE": 10,
    "JOB_MAX_CONCURRENT": 2,
}
INT_VARIABLES = [k for k, v in CONTRACT_DEFAULTS.items() if isinstance(v, int)]
BAD_INTS = ["0", "-1", "1.5", "1.0", "abc", "", " ", "1e3", "+5", "0x10", "²", "5 5"]


def test_contract_defaults() -> None:
    """With an empty environment every variable has the contract's default."""
    s = load_settings({})
    for name, default in CONTRACT_DEFAULTS.items():
        assert getattr(s, name.lower()) == default, name
    assert s.clickhouse_url == ""
    assert s.streamer_data_dir == Path("./.streamer")


def test_embedded_clickhouse_default_is_absolute_chdb_dsn(tmp_path: Path) -> None:
    """CLICKHOUSE_URL unset -> chdb:///<abs STREAMER_DATA_DIR>/clickhouse."""
    s = load_settings({"STREAMER_DATA_DIR": str(tmp_path)})
    assert s.clickhouse_dsn == f"chdb://{tmp_path.resolve()}/clickhouse"
    assert s.clickhouse_embedded
    rel = load_settings({"STREAMER_DATA_DIR": "rel/dir"})
    assert rel.clickhouse_dsn.startswith("chdb:///")  # never chdb://./x


def test_every_variable_is_read(tmp_path: Path) -> None:
    """Each contract variable set in the environment lands in its field."""
    env = {
        "REDIS_URL": "rediss://cache.example:6380/2",
        "CLICKHOUSE_URL": "https://u:p@ch.example:8443",
        "CLICKHOUSE_DATABASE": "analytics_2",
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
        "KAFKA_EVENTS_TOPIC": "t.events",
        "KAFKA_DLQ_TOPIC": "t.dlq",
        "STREAMER_APP_ID": "app",
        "STREAMER_DATA_DIR": str(tmp_path),
        **{name: str(i + 7) for i, name in enumerate(INT_VARIABLES)},
    }
    s = load_settings(env)
    for name, value in env.items():
        got = getattr(s, name.lower())
        assert str(got) == value, name
    assert s.clickhouse_dsn == env["CLICKHOUSE_URL"]
    assert not s.clickhouse_embedded


def test_whitespace_around_an_integer_is_accepted() -> None:
    """` 5 ` is the whole number 5."""
    assert load_settings({"JOB_TRENDING_TOPK": " 5 "}).job_trending_topk == 5


@pytest.mark.parametrize("name", INT_VARIABLES)
@pytest.mark.parametrize("raw", BAD_INTS)
def test_invalid_integers_are_rejected_by_name(name: str, raw: str) -> None:
    """0, negatives, fractions, words, empty: ConfigError naming the variable and the rule."""
    with pytest.raises(ConfigError) as info:
        load_settings({name: raw})
    assert info.value.variable == name
    assert "whole number > 0" in info.value.rule
    assert str(info.value).startswith(f"{name}: ")
    assert "\n" not in str(info.value)


def test_lower_case_names_are_checked_too() -> None:
    """pydantic-settings reads names case-insensitively; the integer rule applies as well."""
    with pytest.raises(ConfigError) as info:
        load_settings({"job_trending_topk": "1.0"})
    assert info.value.variable == "JOB_TRENDING_TOPK"
    assert load_settings({"job_trending_topk": "7"}).job_trending_topk == 7


def test_web_port_range() -> None:
    """STREAMER_WEB_PORT must be a TCP port."""
    with pytest.raises(ConfigError) as info:
        load_settings({"STREAMER_WEB_PORT": "65536"})
    assert info.value.variable == "STREAMER_WEB_PORT"


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://u:p@h:6380/1", "redis://h", "redis://[::1]:6379/0",
     "redis+sentinel://s1:26379,s2:26379/mymaster", "rediss+sentinel://:pw@s1:26379/mymaster/2",
     "redis+sentinel://s1/svc?sentinel_password=x", "redis+cluster://n1:7000,n2:7001",
     "rediss+cluster://u:pw@n1:7000", "redis+cluster://[::1]:7000,n2:7001/"],
)
def test_redis_url_accepted(url: str) -> None:
    """One server, Sentinel (service name, optional db) and Cluster forms."""
    assert load_settings({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "url",
    ["http://h:6379", "unix:///tmp/r.sock", "redis://", "127.0.0.1:6379", "", "redis://h:abc/0",
     "redis://h:0/0", "redis://h:70000/0", "redis://[bad/0", "redis://a:1,b:2/0",
     "redis+sentinel://s1:26379", "redis+sentinel://s1:26379/svc/x", "redis+sentinel://s1:1/a/1/2",
     "redis+sentinel://s1:26379,:1/svc", "redis+cluster://n1:7000/3", "redis+cluster://n1:x",
     "redis+sentinel://s1/svc?ssl_ca_certs=/ca.pem", "redis+cluster://n1:7000?sentinel_password=x",
     "redis+cluster://", "redis+clusters://n1:7000"],
)
def test_redis_url_rejected(url: str) -> None:
    """Other schemes, no host, bad ports: ConfigError for REDIS_URL."""
    with pytest.raises(ConfigError) as info:
        load_settings({"REDIS_URL": url})
    assert info.value.variable == "REDIS_URL"


@pytest.mark.parametrize(
    "url", ["", "http://h:8123", "https://user:pass@h:8443", "chdb:///abs/path", "http://h"]
)
def test_clickhouse_url_accepted(url: str) -> None:
    """http(s) with a host, chdb with an absolute path, or empty for the embedded default."""
    assert load_settings({"CLICKHOUSE_URL": url}).clickhouse_url == url


@pytest.mark.parametrize(
    "url",
    ["chdb://./x", "chdb://relative", "tcp://h:9000", "clickhouse://h:9000", "http://", "h:8123",
     "https://u:p@h:99999"],
)
def test_clickhouse_url_rejected(url: str) -> None:
    """Relative chdb paths (read as a host), other schemes, bad ports."""
    with pytest.raises(ConfigError) as info:
        load_settings({"CLICKHOUSE_URL": url})
    assert info.value.variable == "CLICKHOUSE_URL"


@pytest.mark.parametrize("servers", ["", "k1", "k1:x", "k1:9092,", "k1:9092,,k2:9092"])
def test_kafka_bootstrap_rejected(servers: str) -> None:
    """Comma-separated host:port only."""
    with pytest.raises(ConfigError) as info:
        load_settings({"KAFKA_BOOTSTRAP_SERVERS": servers})
    assert info.value.variable == "KAFKA_BOOTSTRAP_SERVERS"


@pytest.mark.parametrize("db", ["", "no-dash", "a b", "x;DROP"])
def test_database_name_rejected(db: str) -> None:
    """CLICKHOUSE_DATABASE is an identifier (it is spliced into SQL)."""
    with pytest.raises(ConfigError) as info:
        load_settings({"CLICKHOUSE_DATABASE": db})
    assert info.value.variable == "CLICKHOUSE_DATABASE"


def test_derived_ttls() -> None:
    """Trending TTL = 1.5 x interval (90 s default), suggestions TTL = 2 x interval (1200 s)."""
    s = load_settings({})
    assert s.trending_ttl_ms == 90_000
    assert s.suggestions_ttl_s == 1_200
    t = load_settings({"JOB_TRENDING_INTERVAL_SEC": "7", "JOB_SUGGESTION_INTERVAL_SEC": "33"})
    assert t.trending_ttl_ms == 10_500
    assert t.suggestions_ttl_s == 66
    assert load_settings({"JOB_TRENDING_WINDOW_HOURS": "3"}).window_minutes == 180


def test_masked_hides_passwords_everywhere() -> None:
    """masked() never contains a URL password, and reports the derived TTLs."""
    s = load_settings(
        {"REDIS_URL": "rediss://app:r3dispw@cache:6380/0",
         "CLICKHOUSE_URL": "https://default:chpw@ch.example:8443"}
    )
    shown = s.masked()
    assert "r3dispw" not in repr(shown) and "chpw" not in repr(shown)
    assert shown["REDIS_URL"] == "rediss://app:***@cache:6380/0"
    assert shown["CLICKHOUSE_URL"] == "https://default:***@ch.example:8443"
    assert shown["JOB_TRENDING_TOPK"] == 50
    assert shown["TRENDING_TTL_S (derived)"] == 90
    assert shown["SUGGESTIONS_TTL_S (derived)"] == 1200


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@h:1/0", "redis://user@h:1/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://u:p%40ss@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
        ("rediss://h:1/0?password=zz&db=2", "rediss://h:1/0?password=***&db=2"),
        ("redis://u:pw@[bad/0", "redis://u:***@[bad/0"),
        ("https://u:a:b@h:8443/x", "https://u:***@h:8443/x"),
        ("redis+sentinel://:pw@s1:1,s2:2/m/0", "redis+sentinel://:***@s1:1,s2:2/m/0"),
        ("redis+sentinel://s1:1/m?sentinel_password=zz", "redis+sentinel://s1:1/m?sentinel_password=***"),
        ("rediss+cluster://u:pw@n1:1,n2:2", "rediss+cluster://u:***@n1:1,n2:2"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    """Userinfo passwords and password= query values are masked; nothing else changes."""
    assert mask_url(url) == masked


def test_error_line_masks_the_rejected_url() -> None:
    """A rejected URL is echoed without its password."""
    with pytest.raises(ConfigError) as info:
        load_settings({"REDIS_URL": "http://app:topsecret@h:6379/0"})
    assert "topsecret" not in str(info.value)


def test_settings_are_frozen() -> None:
    """Settings are read once and cannot change underneath the process."""
    s = load_settings({})
    with pytest.raises(ValueError):
        setattr(s, "job_trending_topk", 3)  # noqa: B010 - the point is the runtime check
    assert isinstance(s, Settings)


def test_reads_os_environ_when_no_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings() with no argument reads the process environment."""
    monkeypatch.setenv("JOB_TRENDING_TOPK", "11")
    assert load_settings().job_trending_topk == 11
    monkeypatch.setenv("JOB_TRENDING_TOPK", "0")
    with pytest.raises(ConfigError):
        load_settings()


# ---- as a process: exit 2, one line, no traceback -------------------------------------------

PYTHON = sys.executable


def run_streamer(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m streamer ARGS` with extra environment; never reaches a real service."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "REDIS_", "CLICKHOUSE_"))}
    full.update(env)
    full["COLUMNS"] = "200"
    return subprocess.run(
        [PYTHON, "-m", "streamer", *args], env=full, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        (["check-config"], "JOB_TRENDING_TOPK", "0"),
        (["check-config"], "JOB_CH_TIMEOUT_MS", "1.5"),
        (["jobs", "--once"], "REDIS_URL", "http://u:leak@h:1/0"),
        (["jobs"], "JOB_MAX_CONCURRENT", "-1"),
        (["schema"], "CLICKHOUSE_URL", "chdb://./x"),
        (["worker"], "KAFKA_BOOTSTRAP_SERVERS", "nohostport"),
        (["top"], "JOB_TRENDING_WINDOW_HOURS", "abc"),
        (["demo"], "JOB_REDIS_POOL_SIZE", ""),
        (["sample"], "REDIS_URL", "redis://h:abc/0"),
    ],
)
def test_bad_config_exits_2_with_one_line(command: list[str], variable: str, value: str) -> None:
    """Any command: exit 2, exactly one stderr line naming the variable, no traceback."""
    proc = run_streamer(command, **{variable: value})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0]
    assert "Traceback" not in proc.stderr
    assert "leak" not in proc.stderr
    assert proc.stdout == ""


def test_check_config_prints_masked_configuration(tmp_path: Path) -> None:
    """check-config exits 0 and shows every variable, with passwords masked."""
    proc = run_streamer(
        ["check-config"],
        CLICKHOUSE_URL="https://default:s3cretpw@ch.example:8443",
        REDIS_URL="redis://app:redispw@127.0.0.1:6379/0",
        STREAMER_DATA_DIR=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "s3cretpw" not in out and "redispw" not in out
    assert "https://default:***@ch.example:8443" in out
    for name in CONTRACT_DEFAULTS:
        assert name in out, name


class TestRedisTargets:
    """What each REDIS_URL form connects to (streamer/settings/redis_url.py)."""

    def test_sentinel(self) -> None:
        """Sentinel nodes (default port 26379), service, db, both passwords, TLS."""
        from streamer.settings.redis_url import parse_redis_url

        t = parse_redis_url("rediss+sentinel://u:p%40w@s1,s2:26380/mymaster/3?sentinel_password=sp")
        assert (t.kind, t.tls, t.hosts) == ("sentinel", True, (("s1", 26379), ("s2", 26380)))
        assert (t.service_name, t.db, t.username, t.password) == ("mymaster", 3, "u", "p@w")
        assert t.sentinel_password == "sp"

    def test_cluster_and_server(self) -> None:
        """Cluster startup nodes (default port 6379); one server with its db."""
        from streamer.settings.redis_url import parse_redis_url

        c = parse_redis_url("redis+cluster://:pw@n1:7000,[::1]")
        assert (c.kind, c.hosts, c.password, c.db) == ("cluster", (("n1", 7000), ("::1", 6379)), "pw", 0)
        s = parse_redis_url("redis://h:6380/4")
        assert (s.kind, s.tls, s.hosts, s.db, s.password) == ("server", False, (("h", 6380),), 4, None)

    def test_bad_url_exits_2_naming_redis_url(self) -> None:
        """`check-config` with a broken Sentinel URL: exit 2, one line naming REDIS_URL."""
        import subprocess
        import sys

        env = {**os.environ, "REDIS_URL": "redis+sentinel://:secretpw@s1:26379"}
        out = subprocess.run([sys.executable, "-m", "streamer", "check-config"], env=env,
                             capture_output=True, text=True, timeout=60)
        lines = (out.stdout + out.stderr).strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and "REDIS_URL" in lines[0], lines
        assert "secretpw" not in lines[0]


def test_suggestion_fallback_values() -> None:
    """JOB_SUGGESTION_FALLBACK: `none` by default, `popular` accepted, anything else named."""
    assert load_settings({}).job_suggestion_fallback == "none"
    assert load_settings({"JOB_SUGGESTION_FALLBACK": "popular"}).job_suggestion_fallback == "popular"
    with pytest.raises(ConfigError) as info:
        load_settings({"JOB_SUGGESTION_FALLBACK": "trending"})
    assert "JOB_SUGGESTION_FALLBACK" in str(info.value) and "popular" in str(info.value)

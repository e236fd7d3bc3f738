"""REDIS_URL forms: one server, Sentinel or Cluster; parsed once, validated with one-line reasons.

- `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS): one server.
- `redis+sentinel://[[user]:password@]host:port[,host:port]/service_name[/db]` (`rediss+sentinel`
  for TLS): the master of `service_name` as the Sentinels name it; the password is the data
  nodes'. Sentinels that want their own password take `?sentinel_password=…`, the only query
  option of this form.
- `redis+cluster://[[user]:password@]host:port[,host:port]` (`rediss+cluster` for TLS): the
  startup nodes of a Redis Cluster (database 0 only, as Cluster has no other); no query options.

A one-server URL keeps every query option redis-py knows (`from_url`); the other forms refuse
options they would otherwise drop silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

Kind = Literal["server", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("server", False), "rediss": ("server", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
}
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is and how to reach it."""

    kind: Kind
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    service_name: str = ""
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """`host:port[,host:port]` (after any userinfo) as pairs; ValueError on a bad one."""
    out: list[tuple[str, int]] = []
    for item in netloc.rpartition("@")[2].split(","):
        item = item.strip()
        if ":" in item and not item.endswith("]"):  # host:port, [v6]:port
            host, _, port_s = item.rpartition(":")
        else:  # host, [v6]
            host, port_s = item, ""
        host = host.strip("[]")
        if not host:
            raise ValueError("every node needs a host")
        if port_s and not (port_s.isdigit() and 0 < int(port_s) < 65536):
            raise ValueError("port must be a number in 1..65535")
        out.append((host, int(port_s) if port_s else default_port))
    return tuple(out)


def _db(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"database must be a number (got {text!r})")
    return int(text)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse one REDIS_URL; ValueError with the rule it broke."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError("must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL")
    kind, tls = _SCHEMES[scheme.lower()]
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    hosts = _hosts(parts.netloc, default_port)
    path = [p for p in parts.path.split("/") if p]
    service, db = "", 0
    if kind == "server":
        if len(hosts) != 1:
            raise ValueError("a redis:// URL names one host (use redis+sentinel:// or redis+cluster://)")
        db = _db(path[0] if path else "")
    elif kind == "sentinel":
        if not path or len(path) > 2:
            raise ValueError("must be redis+sentinel://host:port[,host:port]/service_name[/db]")
        service, db = unquote(path[0]), _db(path[1] if len(path) > 1 else "")
    elif path and path != ["0"]:
        raise ValueError("a Redis Cluster has database 0 only: no path after the nodes")
    sentinel_password = query.pop("sentinel_password", None) if kind == "sentinel" else None
    if kind != "server" and query:
        allowed = " (only ?sentinel_password=)" if kind == "sentinel" else ""
        raise ValueError(f"query option(s) {', '.join(sorted(query))} not supported in a "
                         f"{scheme.lower()}:// URL{allowed}")
    return RedisTarget(kind, tls, hosts, db, service, unquote(user) or None,
                       unquote(password) if colon else None, sentinel_password)

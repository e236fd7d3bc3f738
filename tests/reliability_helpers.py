"""Fault injection for the reliability suite: a controllable ClickHouse, a Redis proxy, figures.

Run as a module for the child processes the tests need:
  python -m tests.reliability_helpers fake-clickhouse PATH PORT
  python -m tests.reliability_helpers jobs-lock-ttl TTL_MS -- <streamer args>
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamer.demo.services import START_ATTEMPTS, LocalService, ServiceError, free_port, wait_for_port
from tests.stream_helpers import Cluster, WorkerProcess
from tests.waiting import await_until as await_until  # re-exported: the suites import it here
from tests.waiting import wait_until as wait_until


# ---- figures ----------------------------------------------------------------------------
def _figures_path() -> Path:
    """This test process's own figures file: one per run (and per xdist worker), never shared."""
    given = os.environ.get("RELIABILITY_FIGURES")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(given) if given else (
        Path(tempfile.gettempdir()) / "streamer-reliability" / f"figures-{stamp}-{os.getpid()}.json")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return path.with_name(f"{path.stem}.{worker}{path.suffix}") if worker else path


FIGURES_PATH = _figures_path()


def record_figures(scenario: str, figures: dict[str, Any]) -> None:
    """Merge one scenario's figures into the run's JSON file (read when writing RELIABILITY.md)."""
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if FIGURES_PATH.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(FIGURES_PATH.read_text())
    data[scenario] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    FIGURES_PATH.write_text(json.dumps(data, indent=2, sort_keys=True))
    print(f"FIGURES {scenario}: {json.dumps(figures, sort_keys=True)}")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# ---- a ClickHouse we can break ----------------------------------------------------------
# No ClickHouse server runs on these machines (the Debian one is too old for clickhouse-connect),
# and the embedded chDB engine lives inside the worker process where it cannot be slowed or
# broken from outside. So the worker talks HTTP (CLICKHOUSE_URL=http://127.0.0.1:PORT) to this
# small server: a real chDB engine behind the ClickHouse HTTP protocol subset clickhouse-connect
# uses, with a switch that makes matching requests fail or hang.

_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_INSERT_HEAD = re.compile(rb"(?is)\s*(INSERT INTO .*?)\s+FORMAT\s+(\w+) ?\n")


@dataclass
class Fault:
    """What the fake does to requests whose SQL contains `match` (one of its `|`-separated parts),
    once `after` such requests have passed."""

    mode: str = "ok"  # ok | error | hang
    match: str = ""
    after: int = 0
    seen: int = 0
    release: threading.Event = field(default_factory=threading.Event)


class _FakeState:
    """Engine, fault switch and counters shared by the server's threads."""

    def __init__(self, path: str) -> None:
        import chdb

        self.conn = chdb.connect(path)  # type: ignore[no-untyped-call,unused-ignore]
        self.lock = threading.Lock()
        self.fault = Fault()
        self.stats: dict[str, int] = {"requests": 0, "errors": 0, "hung": 0, "hanging": 0,
                                      "inserts_ok": 0}

    def run(self, sql: str, fmt: str, params: dict[str, str], database: str | None) -> bytes:
        """One engine call under the lock."""
        with self.lock:
            if database:
                self.conn.query(f"USE {database}", "TabSeparated")
            return bytes(self.conn.query(sql, fmt, params=params).bytes())

    def insert(self, raw: bytes, database: str | None) -> None:
        """INSERT ... FORMAT X\\n<data>: run it from a temporary file."""
        head = _INSERT_HEAD.match(raw)
        if head is None:
            raise ValueError("unparsable INSERT")
        with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
            f.write(raw[head.end():])
        try:
            stmt = head.group(1).decode()
            self.run(f"{stmt} FROM INFILE '{f.name}' FORMAT {head.group(2).decode()}",
                     "TabSeparated", {}, database)
        finally:
            os.unlink(f.name)

    def decide(self, sql: str) -> Fault | None:
        """The fault that applies to this request, if any."""
        fault = self.fault
        if fault.mode == "ok" or not any(m in sql for m in fault.match.split("|")):
            return None
        fault.seen += 1
        return fault if fault.seen > fault.after else None


def _decompress(data: bytes, encoding: str | None) -> bytes:
    if encoding == "lz4":
        import lz4.frame  # type: ignore[import-untyped,unused-ignore]

        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        from backports import zstd  # type: ignore[import-not-found,unused-ignore]

        return bytes(zstd.decompress(data))
    return data


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _FakeState

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        """Same as POST (ClickHouse accepts both)."""
        self.do_POST()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, fmt: str = "TabSeparated") -> None:
        self.send_response(status)
        if status == 200:
            self.send_header("X-ClickHouse-Format", fmt)
            self.send_header("X-ClickHouse-Timezone", "UTC")
        else:
            self.send_header("X-ClickHouse-Exception-Code", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """Control endpoints, else one ClickHouse HTTP request."""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        data = _decompress(self._body(), self.headers.get("Content-Encoding"))
        if url.path.startswith("/_"):
            self._control(url.path, data)
            return
        st = self.state
        st.stats["requests"] += 1
        sql = query.get("query", "")
        raw = (sql.encode() + b"\n" + data) if sql else data
        fault = st.decide(raw[:4000].decode(errors="replace"))
        if fault is not None and self._apply(fault):
            return
        try:
            self._execute(raw, query)
        except Exception as exc:
            self._reply(500, f"Code: 1. DB::Exception: {exc}".encode())

    def _apply(self, fault: Fault) -> bool:
        """Fail or hang the request; True when it was answered here."""
        st = self.state
        if fault.mode == "hang":
            st.stats["hung"] += 1
            st.stats["hanging"] += 1
            fault.release.wait(600)
            st.stats["hanging"] -= 1
            return False  # released: serve it normally (a slow but healthy server)
        st.stats["errors"] += 1
        self._reply(500, b"Code: 202. DB::Exception: injected failure (TOO_MANY_SIMULTANEOUS_QUERIES)")
        return True

    def _execute(self, raw: bytes, query: dict[str, str]) -> None:
        st = self.state
        database = query.get("database")
        if raw.lstrip()[:6].upper() == b"INSERT":
            st.insert(raw, database)
            st.stats["inserts_ok"] += 1
            self._reply(200, b"")
            return
        text = raw.decode()
        found = _TRAILING_FORMAT.search(text)
        fmt = found.group(1) if found else "TabSeparated"
        params = {k[6:]: v for k, v in query.items() if k.startswith("param_")}
        self._reply(200, st.run(text, fmt, params, database), fmt)

    def _control(self, path: str, data: bytes) -> None:
        st = self.state
        if path == "/_fault":
            doc = json.loads(data or b"{}")
            old = st.fault
            st.fault = Fault(doc.get("mode", "ok"), doc.get("match", ""), int(doc.get("after", 0)))
            old.release.set()
            self._reply(200, b"ok")
        elif path == "/_stats":
            self._reply(200, json.dumps(st.stats).encode())
        elif path == "/_sql":
            try:
                self._reply(200, st.run(data.decode(), "JSONCompact", {}, None), "JSONCompact")
            except Exception as exc:
                self._reply(500, str(exc).encode())
        else:
            self._reply(404, b"unknown control path")


def serve_fake_clickhouse(path: str, port: int) -> None:
    """Run the fake until killed."""
    _FakeHandler.state = _FakeState(path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _FakeHandler)
    server.daemon_threads = True
    server.serve_forever()


@dataclass
class FakeClickHouse:
    """The fake ClickHouse as a child process (its own chDB directory), controlled over HTTP."""

    path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FakeClickHouse:
        """Spawn it and wait until it listens (a port taken meanwhile: killed, another port)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            log = open(self.path.parent / f"fake-ch-{self.port}.log", "wb")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability_helpers", "fake-clickhouse",
                 str(self.path), str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parent.parent))
            try:
                wait_for_port(self.port, 60, self.proc)
                return self
            except ServiceError:
                self.stop()
                if attempt == START_ATTEMPTS - 1:
                    raise
                self.port = free_port()
        return self

    @property
    def url(self) -> str:
        """CLICKHOUSE_URL for the worker."""
        return f"http://127.0.0.1:{self.port}"

    def _post(self, path: str, body: bytes) -> bytes:
        req = urllib.request.Request(f"{self.url}{path}", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            return bytes(r.read())

    def fault(self, mode: str, match: str = "", after: int = 0) -> None:
        """Switch the fault (any switch releases requests hanging under the previous one)."""
        self._post("/_fault", json.dumps({"mode": mode, "match": match, "after": after}).encode())

    def stats(self) -> dict[str, int]:
        """Request counters."""
        return dict(json.loads(self._post("/_stats", b"")))

    def sql(self, statement: str) -> list[list[Any]]:
        """Run SQL on the engine directly, past any fault (verification, seeding)."""
        out = self._post("/_sql", statement.encode())
        return list(json.loads(out)["data"]) if out.strip() else []

    def stop(self) -> None:
        """Kill the child."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---- a Redis proxy that can hold a write --------------------------------------------------
class RedisProxy:
    """TCP proxy to Redis on its own thread; can hold the next MULTI/EXEC on its way in."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0  # bound by start(): the system picks it, nobody can take it first
        self.loop = asyncio.new_event_loop()
        self.held = threading.Event()  # an EXEC is being held
        self._armed = False
        self._release: asyncio.Event | None = None
        self.replies_after_release: list[bytes] = []
        self._watch_reply = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def start(self) -> RedisProxy:
        """Listen on 127.0.0.1 (a port of the system's choice, then in `port`)."""
        self._thread.start()
        assert self._started.wait(60), "the Redis proxy never listened"
        return self

    @property
    def url(self) -> str:
        """REDIS_URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def hold_next_exec(self) -> None:
        """The next client chunk carrying EXEC waits until release()."""
        self._armed = True

    def release(self) -> None:
        """Let the held chunk through; the server's next reply on that link is kept."""
        self._watch_reply = True
        self.loop.call_soon_threadsafe(lambda: self._release.set() if self._release else None)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._release = asyncio.Event()
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = int(server.sockets[0].getsockname()[1])
        self._started.set()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(server.serve_forever())
        pending = asyncio.all_tasks(self.loop)  # stopped: end the links still open
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        holder = {"this_link": False}
        await asyncio.gather(self._pump_in(reader, up_w, holder), self._pump_out(up_r, writer, holder),
                             return_exceptions=True)

    async def _pump_in(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       holder: dict[str, bool]) -> None:
        while data := await src.read(65536):
            if self._armed and b"EXEC" in data:
                self._armed = False
                holder["this_link"] = True
                self.held.set()
                assert self._release is not None
                await self._release.wait()
            dst.write(data)
            await dst.drain()
        dst.close()

    async def _pump_out(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                        holder: dict[str, bool]) -> None:
        while data := await src.read(65536):
            if holder["this_link"] and self._watch_reply:
                self.replies_after_release.append(data)
            dst.write(data)
            await dst.drain()
        dst.close()

    def stop(self) -> None:
        """Stop the loop (connections drop) and wait for its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


@contextlib.contextmanager
def cluster_of(kafka: LocalService, redis_url: str, root: Path, partitions: int = 4) -> Iterator[Cluster]:
    """A Cluster whose workers are killed on exit."""
    c = Cluster(kafka, redis_url, root, partitions, prefix="rel-", CLICKHOUSE_URL="")
    try:
        yield c
    finally:
        c.kill_all()


# ---- child entry points ------------------------------------------------------------------
JOBS_SOCKET_TIMEOUT_S = 300.0  # the jobs-lock-ttl child's Redis socket timeout


def _jobs_with_lock_ttl(ttl_ms: int, argv: list[str]) -> int:
    """`streamer <argv>` with JobRunner's lock TTL set to ttl_ms (the CLI does not expose it)."""
    from streamer import cli
    from streamer.cache import redis_client
    from streamer.jobs import runner

    original = runner.JobRunner.__init__

    def init(self: runner.JobRunner, jobs: Any, redis: Any, max_concurrent: int,
             lock_ttl_ms: int = ttl_ms, live: Any = None) -> None:
        original(self, jobs, redis, max_concurrent, ttl_ms, live)

    runner.JobRunner.__init__ = init  # type: ignore[method-assign]
    # A replica paused (SIGSTOP) for as long as the other takes to start and publish must still
    # read Redis's answer to its held EXEC on resume, not its own client's socket timeout.
    redis_client.make_redis.__defaults__ = (JOBS_SOCKET_TIMEOUT_S,)
    return cli.main(argv)


def main(argv: list[str]) -> int:
    """Dispatch the child entry points."""
    if argv[0] == "fake-clickhouse":
        serve_fake_clickhouse(argv[1], int(argv[2]))
        return 0
    if argv[0] == "jobs-lock-ttl":
        return _jobs_with_lock_ttl(int(argv[1]), argv[3:] if argv[2] == "--" else argv[2:])
    raise SystemExit(f"unknown entry point {argv[0]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


async def changelog_summary(c: Cluster) -> dict[int, list[tuple[int, str, int | None]]]:
    """The state changelog as the broker holds it: partition -> (offset, record key, ids or None)."""
    from tests.stream_helpers import read_topic

    topic = c.env["STREAMER_APP_ID"] + "-state-changelog"
    out: dict[int, list[tuple[int, str, int | None]]] = {}
    for r in await read_topic(c.bootstrap, topic, 10**9, timeout_s=8, drain=True):
        ids = sum(len(v) for v in orjson.loads(r.value)["ids"].values()) if r.value else None
        out.setdefault(r.partition, []).append((r.offset, bytes(r.key or b"").decode(), ids))
    return out


def recovery_lines(w: WorkerProcess) -> list[str]:
    """The worker's 'partition N recovered: ...' log lines."""
    text = w.log_path.read_text(errors="replace") if w.log_path else ""
    return [line.split("] ", 1)[-1] for line in text.splitlines() if "recovered:" in line]

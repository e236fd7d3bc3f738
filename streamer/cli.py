"""Command line: parse, build Settings once, hand over to a mode."""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from redis.exceptions import RedisError

from streamer import __version__
from streamer.cli_help import DOCS, describe_subcommands
from streamer.errors import ConfigError, StreamerError, UsageError
from streamer.ops.logging import setup_logging
from streamer.ops.shutdown import QUICK_STOP_S, STOP_BUDGET_S, Shutdown, run_command, set_hard_exit
from streamer.redaction import mask_url
from streamer.settings.extras import require_demo_parts, require_embedded_engine
from streamer.settings.model import Settings, load_settings


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (exit 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    """An option value that must be a whole number > 0."""
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0 (got {text!r})")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamer", description="Exact stream-driven trending caches.",
                epilog=f"`streamer COMMAND --help` describes a command. More: {DOCS}.")
    p.add_argument("--version", action="version", version=f"streamer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("worker", help="stream mode: the Faust worker")
    jobs = sub.add_parser("jobs", help="ClickHouse-only mode: trending and suggestions jobs")
    jobs.add_argument("--once", action="store_true", help="run each selected job once and exit")
    jobs.add_argument("--job", choices=["trending", "suggestions"],
                      help="run only this job (default: both)")
    jobs.add_argument(
        "--force", action="store_true", help="publish trending even while the stream is fresh"
    )
    jobs.add_argument(
        "--full", action="store_true", help="recompute every user's suggestions (no incremental)"
    )
    sub.add_parser("schema", help="create the ClickHouse database and tables (idempotent)")
    sub.add_parser("init", help="set up a deployment: ClickHouse schema and Kafka topics (idempotent)")
    check = sub.add_parser("check-config", help="validate and print the configuration")
    check.add_argument("--format", choices=["text", "json"], default="text",
                       help="text: one NAME=VALUE  # source line each; json: one object "
                            "(default: %(default)s)")
    _add_sample(sub)
    _add_demo(sub)
    sub.add_parser("top", help="print the trending list and its meta from Redis")
    sub.add_parser("sink", help="only the ClickHouse sink consumer group (needs a ClickHouse server)")
    describe_subcommands(sub)
    return p


def _add_sample(sub: argparse._SubParsersAction[Any]) -> None:
    """`streamer sample` and its options (sizes of the generated data)."""
    sample = sub.add_parser("sample", help="load generated sample data into ClickHouse")
    sample.add_argument("--events", type=_positive_int, default=50_000,
                        help="engagement events over the last 2 hours (default: %(default)s)")
    sample.add_argument("--posts", type=_positive_int, default=2_000,
                        help="distinct posts the events are about (default: %(default)s)")
    sample.add_argument("--users", type=_positive_int, default=1_000,
                        help="users in the follow graph and among the events (default: %(default)s)")
    sample.add_argument("--avg-follows", type=_positive_int, default=20,
                        help="average accounts a user follows (default: %(default)s)")
    sample.add_argument("--replace", action="store_true",
                        help="empty post_events, follows and blocks first (default: refuse when they "
                             "hold rows)")
    sample.add_argument("--allow-server", action="store_true",
                        help="allow loading into a ClickHouse server (http(s) CLICKHOUSE_URL); "
                             "default: only the embedded engine")


def _add_demo(sub: argparse._SubParsersAction[Any]) -> None:
    """`streamer demo` and its options (how long, how fast, how big)."""
    demo = sub.add_parser("demo", help="the whole system on this machine")
    demo.add_argument("--duration", type=float, default=90.0,
                      help="seconds of traffic (default: %(default)s)")
    demo.add_argument("--rate", type=float, default=2000.0,
                      help="events per second (default: %(default)s)")
    demo.add_argument("--posts", type=int, default=5_000,
                      help="distinct posts, at least 10 (default: %(default)s)")
    demo.add_argument("--users", type=int, default=2_000,
                      help="users in the follow graph, at least 10 (default: %(default)s)")


# One stop sequence and one budget for every command (streamer.ops.shutdown): a command that
# watches its stop event gets the whole budget; one that does not (schema, sample, top,
# `jobs --once`) is abandoned after QUICK_STOP_S.
STOP_GRACE_S = STOP_BUDGET_S
# Long-running commands: their first log line names the version. The short ones print for a
# person, whose error must stay one line.
VERSION_LOGGED = frozenset({"worker", "jobs", "sink"})


def describe_failure(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and the one stderr line of a failure we raise on purpose (None: a bug)."""
    if isinstance(exc, ConfigError):
        return 2, "\n".join(f"streamer: invalid configuration: {err}"
                             for err in getattr(exc, "errors", [exc]))
    if isinstance(exc, UsageError):
        return 2, f"streamer: {exc}"
    if isinstance(exc, StreamerError):
        return 1, f"streamer: {exc}"
    return None


def run_async(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, int]], grace_s: float = QUICK_STOP_S
) -> int:
    """Run a coroutine under the stop sequence: SIGTERM/SIGINT set its stop event, exit 0 in time."""
    return run_command(lambda sd: main(sd.stop), describe_failure, watches_stop=grace_s > QUICK_STOP_S,
                       shutdown=_EARLY.pop() if _EARLY else None)


# The stop sequence of this process, installed before the mode's (slow) imports; used once.
_EARLY: list[Shutdown] = []


# Commands that open ClickHouse: an embedded DSN needs the `embedded` extra.
USES_CLICKHOUSE = frozenset({"schema", "init", "sample", "jobs", "worker", "sink"})


def _require_extras(cmd: str, settings: Settings) -> None:
    """Before anything starts (or logs): the optional parts this command needs are installed."""
    if cmd in USES_CLICKHOUSE:
        require_embedded_engine(settings.clickhouse_dsn)
    if cmd == "demo":
        require_demo_parts()


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.command
    if cmd == "check-config":
        from streamer.modes.admin import check_config

        return check_config(settings, args.format)
    if cmd == "schema":
        from streamer.modes.admin import schema

        return run_async(lambda stop: schema(settings))
    if cmd == "init":
        from streamer.modes.init_mode import run_init

        return run_async(lambda stop: run_init(settings))
    if cmd == "sample":
        from streamer.modes.admin import sample

        return run_async(lambda stop: sample(settings, args))
    if cmd == "jobs":
        from streamer.modes.jobs_mode import run_jobs

        return run_async(
            lambda stop: run_jobs(settings, args.once, args.job, args.force, stop, args.full),
            QUICK_STOP_S if args.once else STOP_GRACE_S,
        )
    if cmd == "top":
        from streamer.modes.admin import top

        return run_async(lambda stop: top(settings))
    if cmd == "worker":
        from streamer.modes.worker import run_worker

        return run_command(lambda sd: run_worker(settings, sd), describe_failure,
                           shutdown=_EARLY.pop() if _EARLY else None)
    if cmd == "sink":
        from streamer.modes.sink_mode import run_sink

        return run_async(lambda stop: run_sink(settings, stop), STOP_GRACE_S)
    if cmd == "demo":
        from streamer.modes.demo_mode import run_demo

        return run_demo(settings, args)
    raise AssertionError(cmd)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamer` console script."""
    try:
        return _main(argv)
    finally:
        if argv is None:  # the exit code is decided (the loop's handlers are gone): a late
            for sig in (signal.SIGTERM, signal.SIGINT):  # signal must not turn it into a kill
                signal.signal(sig, signal.SIG_IGN)


def _main(argv: list[str] | None) -> int:
    """Parse, load the settings, run the command; the exit code."""
    args = _parser().parse_args(argv)
    set_hard_exit(argv is None)  # argv given: run inside another program, never os._exit it
    if args.command not in ("check-config", "demo"):  # the demo has its own (it also stops on SIGHUP)
        _EARLY[:] = [Shutdown()]
        _EARLY[0].install(None)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(describe_failure(exc)[1], file=sys.stderr)  # type: ignore[index]
        return 2
    try:
        _require_extras(args.command, settings)
    except StreamerError as exc:
        code, line = describe_failure(exc) or (1, f"streamer: {exc}")
        print(line, file=sys.stderr)
        return code
    setup_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "worker":  # an untested Faust stops the start in one line, before any log
            from streamer.stream.faust_compat import check_faust

            check_faust()
        if args.command in VERSION_LOGGED:
            logging.getLogger("streamer").info("streamer %s %s, Python %s", __version__,
                                               args.command, platform.python_version())
        return _dispatch(args, settings)
    except StreamerError as exc:
        code, line = describe_failure(exc) or (1, f"streamer: {exc}")
        print(line, file=sys.stderr)
        return code
    except RedisError as exc:
        print(f"streamer: Redis {mask_url(settings.redis_url)}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0

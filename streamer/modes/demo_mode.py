"""`streamer demo`: the whole system on this machine, started, shown, checked and stopped.

Process layout (chDB lets one process own an embedded ClickHouse directory, and a session
lives as long as its process):
  demo (this process: never opens ClickHouse)
   ├─ watchdog          kills everything below if the demo dies without cleaning up
   ├─ redis-server      own instance, free port
   ├─ tansu broker      Kafka-compatible, in memory, free port
   ├─ loader            short child: schema + follow graph into ClickHouse, then exits
   ├─ streamer worker   owns ClickHouse from then on; Redis + /metrics are how we watch it
   └─ jobs --once       only if suggestions never ran: after the worker stopped
Every child leads its own process group; every exit path stops the groups.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
from typing import Any

from streamer.demo import services
from streamer.demo.live import make_view
from streamer.demo.options import (
    RUN_MARKER,
    SERVICE_STOP_S,
    SUGGESTION_INTERVAL_S,
    WORKER_STOP_S,
    DemoFailed,
    DemoOptions,
    Stopped,
)
from streamer.demo.people import people_lines, publish_people_list, report_of, side_by_side
from streamer.demo.steps import Demo
from streamer.demo.summary import (
    Summary,
    final_table,
    sample_suggestions,
    summary_lines,
    write_report,
)
from streamer.ops.shutdown import CANCEL_WAIT_S, Shutdown, run_command
from streamer.settings.model import Settings


async def finish(demo: Demo, code: int) -> int:
    """Summary and cleanup: runs on every exit path, interrupted or not."""
    demo.view.live_stop()
    demo.log(f"finishing: exit code {code}, signal {demo.interrupted or 'none'}")
    if demo.interrupted:
        demo.view.info(f"{demo.interrupted} received: stopping everything the demo started.")
    if code != 0 and demo.temp_dir:
        demo.temp_dir = False  # keep the logs of a failed run
        demo.view.info(f"the logs of every process stay in {demo.data_dir}")
    suggestions: tuple[int, dict[int, Any]] = (0, {})
    if demo.redis is not None and demo.procs.find("worker") is not None:
        suggestions = await stop_worker_then_suggestions(demo)
    if demo.redis is not None and demo.final is not None:
        summary = Summary(
            dict(demo.record.counters), demo.state.traffic_elapsed_s, demo.final, demo.verdict,
            suggestions[0], suggestions[1], demo.interrupted, str(demo.data_dir), not demo.temp_dir)
        if code == 0 and demo.people is not None and not demo.people.verdict.ok:
            code = 1
        table, plain = final_table(demo.verdict, demo.state)
        if demo.people is not None and demo.people.verdict.snapshot is not None:
            table, plain = side_by_side(table_posts(demo), demo.people.verdict.snapshot.trending or [],
                                        demo.record.burst.get("post_id"))
        demo.view.table(table, plain)
        lines = summary_lines(summary, demo.state)
        at = next((i for i, line in enumerate(lines) if line.startswith("  suggested users")),
                  len(lines))
        lines[at:at] = people_lines(demo.people, demo.record.burst)  # beside the events check
        demo.view.lines(lines)
        if demo.opts.report_path is not None:
            write_report(demo.opts.report_path, code, summary, demo.record,
                         demo.settings.job_trending_topk, demo.opts.seed,
                         {"people": report_of(demo.people)})
    await stop_everything(demo)
    return code


def table_posts(demo: Demo) -> list[Any]:
    """The events list the summary shows: the verified one, else the last one seen."""
    snap = demo.verdict.snapshot if demo.verdict and demo.verdict.snapshot else demo.state.last
    return (snap.trending if snap else None) or []


async def stop_worker_then_suggestions(demo: Demo) -> tuple[int, dict[int, Any]]:
    """Stop the worker; if suggestions never ran, run the job once from the now-free ClickHouse."""
    assert demo.redis is not None
    with contextlib.suppress(OSError, ConnectionError):
        demo.final = await demo.poller.snapshot() if demo.poller else demo.final
    worker = demo.procs.find("worker")
    if worker is not None:
        demo.view.step("Stopping the worker (SIGTERM; it flushes its ClickHouse sink and exits)…")
        demo.log(await demo.procs.stop(worker, demo.shutdown.left_s(WORKER_STOP_S)))
        demo.view.ok("worker stopped")
        if not demo.interrupted and demo.verdict is not None and demo.verdict.ok:
            demo.people = await publish_people_list(demo)
    users = demo.record.top_users(200)
    with contextlib.suppress(OSError, ConnectionError):
        found = await sample_suggestions(demo.redis, users)
        if found[0] or demo.interrupted or not users:
            return found
        demo.view.step("No suggested-user lists in Redis yet: the worker runs that job every "
                       f"{SUGGESTION_INTERVAL_S} s and this run was shorter. Running it once now "
                       "(`streamer jobs --once --job suggestions`); it can open ClickHouse because "
                       "the worker has stopped…")
        proc = await demo.spawn("suggestions-job", [
            sys.executable, "-m", "streamer", "jobs", "--once", "--job", "suggestions"])
        stopped = asyncio.create_task(demo.stop.wait())
        await asyncio.wait([asyncio.create_task(proc.wait()), stopped],
                           return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await demo.forget("suggestions-job")
        demo.view.ok("suggestions job finished")
        return await sample_suggestions(demo.redis, users)
    return 0, {}


async def stop_everything(demo: Demo) -> None:
    """Stop every child group (newest first), including one whose start was still in flight."""
    demo.procs.close()
    children = demo.procs.newest_first()
    for child in children:
        demo.view.step(f"Stopping {child.name}…")
        cap_s = WORKER_STOP_S if child.name == "worker" else SERVICE_STOP_S
        demo.log(await demo.procs.stop(child, demo.shutdown.left_s(cap_s)))
    if children:
        demo.view.ok(f"stopped {', '.join(c.name for c in children)}: nothing left running")
    if demo.redis is not None:
        with contextlib.suppress(Exception):
            await demo.redis.aclose()
    if demo.poller is not None:
        await demo.poller.close()
    if demo.temp_dir:
        shutil.rmtree(demo.data_dir, ignore_errors=True)


async def _main(opts: DemoOptions, shutdown: Shutdown) -> int:
    os.environ[RUN_MARKER] = opts.run_id  # inherited by every child, the watchdog included
    watchdog = services.Watchdog()
    demo = Demo(opts, make_view(), shutdown, procs=services.ChildProcesses(watchdog))

    def on_signal(name: str) -> None:
        demo.log(f"{name} received")
        if name == "SIGHUP":
            silence_output()
        demo.interrupted = demo.interrupted or name

    def on_force() -> None:  # a second signal, or the stop budget spent
        demo.log("stopping did not finish in time: killing every group")
        demo.procs.kill_all_now()
        watchdog.close()

    shutdown.on_signal(on_signal)
    shutdown.on_force(on_force)
    code = 1
    task = asyncio.create_task(demo.run())
    stopper = asyncio.create_task(demo.stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        code = await outcome(demo, task)
    finally:
        stopper.cancel()
        try:
            code = await finish(demo, code)
        finally:
            watchdog.close()
    return code


async def outcome(demo: Demo, task: asyncio.Task[int]) -> int:
    """Exit code of the run task: interrupted runs end with 0 (the contract's clean stop)."""
    if not task.done():
        task.cancel()
        # The steps also watch demo.stop, because a cancellation can be swallowed by a library
        # (seen under load inside a Redis/HTTP read); never let a stuck step delay the cleanup.
        await asyncio.wait([task], timeout=demo.shutdown.left_s(CANCEL_WAIT_S))
        if task.done() and not task.cancelled():
            task.exception()  # mark it retrieved: whatever a step raised after the signal
        demo.log("steps cancelled")
        return 0
    try:
        return task.result()
    except Stopped:
        return 0
    except services.ServiceError as exc:
        demo.view.error(str(exc))
    except DemoFailed as exc:
        demo.view.error(str(exc))
    except Exception as exc:  # any other failure is reported, then everything is cleaned up
        demo.view.error(f"unexpected {type(exc).__name__}: {exc}")
    return 0 if demo.interrupted else 1


def silence_output() -> None:
    """The terminal is gone (SIGHUP): send further output nowhere so cleanup cannot fail on it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)
    os.close(devnull)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of `streamer demo`.

    `settings` is not used for the services: the demo starts its own and hands the worker an
    environment built from this process's environment (topic names, top-K, window pass through).
    """
    try:
        opts = DemoOptions.parse(args)
    except ValueError as exc:
        print(f"streamer demo: {exc}", file=sys.stderr)
        return 2
    shutdown = Shutdown(signals=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    # The demo reports its own failures (outcome()); anything else is a bug worth a traceback.
    return run_command(lambda sd: _main(opts, sd), lambda exc: None, shutdown=shutdown)


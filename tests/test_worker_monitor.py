"""The worker's monitor ends the process when a background task dies before the stop.

The ingestor and the Faust app are stand-ins here (a real crash of the sink's consumer or of
the jobs runner cannot be produced on demand); the tasks are real asyncio tasks."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streamer.modes.worker import Worker
from streamer.ops.shutdown import Shutdown
from streamer.settings.model import Settings
from tests.test_ops_shutdown import disarm


def worker_with(settings: Settings, task: asyncio.Future[None]) -> tuple[Worker, Shutdown]:
    """A Worker whose monitor watches `task` beside a healthy ingestor and app."""
    shutdown = Shutdown(budget_s=30.0)
    worker = Worker(settings, shutdown)
    worker.ingestor = SimpleNamespace(fatal=None, states={})  # type: ignore[assignment]
    worker.app = SimpleNamespace(crashed=False, crash_reason=None, consumer=None)  # type: ignore[assignment]
    worker.tasks.append(task)
    return worker, shutdown


async def test_a_crashed_background_task_is_fatal(settings: Settings) -> None:
    """The sink's task raised: the monitor begins the stop with exit code 1."""
    async def crash() -> None:
        raise ConnectionError("sink consumer lost its broker")

    task = asyncio.ensure_future(crash())
    await asyncio.wait({task})
    worker, shutdown = worker_with(settings, task)
    try:
        await asyncio.wait_for(worker._monitor(), 10)
        assert shutdown.begun and shutdown.exit_code == 1 and worker.exit_code == 1
    finally:
        disarm(shutdown)

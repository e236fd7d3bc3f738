"""The HTTP side of a process: /metrics, /healthz, /readyz on STREAMER_WEB_PORT."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from streamer.ops.metrics import READY, render

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
READY_REFRESH_S = 5.0  # streamer_ready follows readiness even where nothing probes /readyz


async def _is_ready(readiness: ReadinessCheck) -> tuple[bool, str]:
    """The check's answer, an exception being a "no"; streamer_ready set to match."""
    try:
        ready, detail = await readiness()
    except Exception as exc:
        ready, detail = False, f"{type(exc).__name__}: {exc}"
    READY.set(1 if ready else 0)
    return ready, detail


def _ready_refresher(
    readiness: ReadinessCheck,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def refresh(_: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await _is_ready(readiness)
                await asyncio.sleep(READY_REFRESH_S)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return refresh


def build_app(readiness: ReadinessCheck) -> web.Application:
    """aiohttp app serving the three endpoints."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        ready, detail = await _is_ready(readiness)
        status = 200 if ready else 503
        return web.json_response({"ready": ready, "detail": detail}, status=status)

    app = web.Application()
    app.cleanup_ctx.append(_ready_refresher(readiness))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_http(port: int, readiness: ReadinessCheck, host: str = "0.0.0.0") -> web.AppRunner:
    """Start serving; the caller awaits `runner.cleanup()` on shutdown."""
    runner = web.AppRunner(build_app(readiness), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

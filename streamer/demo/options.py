"""What one run of `streamer demo` was asked to do, its fixed demo settings and its two
outcomes other than success (stopped by a signal, a step failed)."""

from __future__ import annotations

import argparse
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

RUN_MARKER = "STREAMER_DEMO_RUN"  # set in every child's environment (tests find leftovers by it)
REPORT_ENV = "STREAMER_DEMO_REPORT"  # write a JSON report there (final values + produced events)
SEED_ENV = "STREAMER_DEMO_SEED"
PARTITIONS = 4
TRENDING_INTERVAL_S = 5
SUGGESTION_INTERVAL_S = 30
RECONCILE_INTERVAL_S = 20
READY_TIMEOUT_S = 120.0
WORKER_STOP_S = 30.0  # caps of the stop steps; the one stop budget bounds them all
SERVICE_STOP_S = 10.0
SETTLE_S = max(40.0, 6.0 * TRENDING_INTERVAL_S)  # after the worker's counters stop moving
VERIFY_MAX_S = 600.0


class Stopped(Exception):
    """The user asked to stop (signal); raised by a step that noticed it."""


class DemoFailed(Exception):
    """A step failed; the message says what happened and where to look."""


@dataclass
class DemoOptions:
    """What the command line and environment asked for."""

    duration_s: float
    rate: float
    posts: int
    users: int
    data_dir: Path | None
    report_path: Path | None
    seed: int
    run_id: str

    @classmethod
    def parse(cls, args: argparse.Namespace) -> DemoOptions:
        """Validate arguments; raises ValueError with a sentence for a person."""
        if args.duration <= 0 or args.rate <= 0:
            raise ValueError("--duration and --rate must be greater than 0")
        if args.posts < 10 or args.users < 10:
            raise ValueError("--posts and --users must be at least 10")
        data = os.environ.get("STREAMER_DATA_DIR")
        report = os.environ.get(REPORT_ENV)
        seed = os.environ.get(SEED_ENV)
        return cls(
            float(args.duration), float(args.rate), int(args.posts), int(args.users),
            Path(data).resolve() / "demo" if data else None, Path(report) if report else None,
            int(seed) if seed else random.randrange(1 << 30),
            os.environ.get(RUN_MARKER) or uuid.uuid4().hex[:12],
        )

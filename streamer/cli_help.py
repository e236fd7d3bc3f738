"""What `streamer COMMAND --help` says: what each command does, what drives it, where to read on."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

DOCS = "README.md (Commands, Configuration) and docs/"
_ENV_NOTE = ("Configuration comes from environment variables (and STREAMER_CONFIG_FILE); "
             "`streamer check-config` prints the effective values.")

# Sub-command -> (what it does, the variables that drive it, where to read more).
DESCRIPTIONS: dict[str, tuple[str, str, str]] = {
    "worker": (
        "Stream mode: consume engagement events from Kafka, keep exact windowed counts per post, "
        "publish the trending list to Redis every JOB_TRENDING_INTERVAL_SEC, reconcile it "
        "against ClickHouse and run the suggestions job. Runs until SIGTERM/SIGINT.",
        "KAFKA_*, REDIS_URL, CLICKHOUSE_URL, CLICKHOUSE_DATABASE, STREAMER_*, JOB_*, RECONCILE_*",
        "docs/MODES.md, docs/OPERATIONS.md",
    ),
    "jobs": (
        "ClickHouse-only mode: compute trending and suggested users from ClickHouse queries and "
        "publish them to Redis. Trending is published only while no stream worker publishes "
        "(standby) unless --force. Runs until SIGTERM/SIGINT, or once with --once (exit 0 only "
        "if every selected job succeeded).",
        "CLICKHOUSE_URL, CLICKHOUSE_DATABASE, REDIS_URL, JOB_*, STREAMER_DATA_DIR, "
        "STREAMER_WEB_PORT",
        "docs/MODES.md",
    ),
    "schema": (
        "Create the ClickHouse database and tables if missing (idempotent).",
        "CLICKHOUSE_URL, CLICKHOUSE_DATABASE, STREAMER_DATA_DIR",
        "docs/CONTRACT.md",
    ),
    "check-config": (
        "Validate the whole configuration (every error at once, exit 2) and print the effective "
        "values with secrets masked and where each came from (file:line, environment, default). "
        "Never truncated: one NAME=VALUE line each, or JSON with --format json.",
        "every variable of README.md's configuration table, STREAMER_CONFIG_FILE",
        "README.md#configuration",
    ),
    "sample": (
        "Generate a follow graph and engagement events over the last 2 hours and load them into "
        "ClickHouse (the schema is created first), for trying the ClickHouse-only mode. Refuses "
        "to load into tables that already hold rows unless --replace; loads into a ClickHouse "
        "server (http(s) CLICKHOUSE_URL) only with --allow-server.",
        "CLICKHOUSE_URL (empty: embedded chDB in STREAMER_DATA_DIR/clickhouse), "
        "CLICKHOUSE_DATABASE, STREAMER_DATA_DIR",
        "README.md#quick-start",
    ),
    "demo": (
        "The whole system on this machine: starts its own Kafka-compatible broker, redis-server "
        "and embedded ClickHouse, generates traffic, runs the stream worker and shows what it "
        "publishes, then verifies every published value against a recount. Ctrl-C stops it.",
        "STREAMER_DATA_DIR, STREAMER_DEMO_SEED, STREAMER_DEMO_REPORT",
        "docs/DEMO.md",
    ),
    "top": (
        "Print the current trending list and its metadata from Redis (exit 1 when nothing is "
        "published or Redis cannot be reached).",
        "REDIS_URL, JOB_TRENDING_WINDOW_HOURS",
        "README.md#caches-what-readers-get",
    ),
    "sink": (
        "Only the ClickHouse sink consumer group: copies accepted events from Kafka into "
        "post_events, for deployments with a ClickHouse server. Runs until SIGTERM/SIGINT.",
        "KAFKA_*, CLICKHOUSE_URL, CLICKHOUSE_DATABASE, STREAMER_SINK_BATCH_SIZE, "
        "STREAMER_SINK_FLUSH_MS, STREAMER_APP_ID",
        "docs/OPERATIONS.md#the-standalone-sink",
    ),
}


def describe(name: str, short_help: str | None) -> str:
    """The description of a sub-command (a command without an entry gets its help line)."""
    what, variables, more = DESCRIPTIONS.get(name, (short_help or name, "", DOCS))
    paragraphs = [what, *([f"Driven by: {variables}."] if variables else []), _ENV_NOTE,
                  f"More: {more}."]
    return "\n\n".join(textwrap.fill(text, 88) for text in paragraphs)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the paragraphs of a description; options say their defaults in their help text."""


def describe_subcommands(sub: argparse._SubParsersAction[Any]) -> None:
    """Give every sub-command parser its description and formatter (after all are added)."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        parser.description = describe(name, helps.get(name))
        parser.formatter_class = HelpFormatter

"""A py-spy profile of a running worker, summarised as text with repository-relative file names."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from benchmarks.common import relative_path

RATE_HZ = 200


def py_spy_binary() -> str | None:
    """py-spy beside the interpreter or on PATH (the profile is skipped without it)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recorder:
    """`py-spy record --pid` in raw (collapsed-stack) format, stopped with SIGINT when the drain ends."""

    def __init__(self, pid: int, raw_out: Path) -> None:
        binary = py_spy_binary()
        if binary is None:
            raise RuntimeError("py-spy is not installed")
        self.raw_out = raw_out
        cmd = [binary, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw"]
        cmd += ["--nonblocking", "--output", str(raw_out)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> str:
        """Stop sampling; the collapsed stacks ("" if py-spy wrote nothing)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return self.raw_out.read_text() if self.raw_out.exists() else ""


def summarize(raw: str, title: str, top: int = 30) -> str:
    """Self and inclusive sample shares per function (file names made relative)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    lines = [f"py-spy at {RATE_HZ} Hz, {total} samples: {title}", "", "self %  function (file)"]
    lines += [_share(f, n, total) for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines += ["", "inclusive %  function (file)"]
    lines += [_share(f, n, total) for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (file relative)`: self time per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({relative_path(where.rsplit(':', 1)[0].rstrip(')'))})" if where else name


def _share(function: str, samples: int, total: int) -> str:
    return f"{100 * samples / max(1, total):5.1f}  {function}"

"""The one stop sequence (streamer.ops.shutdown), each case in a child process of its own:
the watchdog ends the process with the decided code, a second signal forces, steps share one
budget."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap

import pytest

from streamer.ops.shutdown import Shutdown
from streamer.stream.startup import StartClock


def disarm(sd: Shutdown) -> None:
    """A stop run in-process: cancel its watchdog, so it never fires after the test (a command
    never cancels it, hence no public way)."""
    if sd._timer is not None:
        sd._timer.cancel()


def child(code: str) -> subprocess.Popen[str]:
    """A Python child running `code` (dedented), stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


HANGS_AFTER_STOP = """
    import asyncio, threading, time
    from streamer.ops.shutdown import Shutdown, run_command

    async def main(sd):
        # Ignores its stop event and leaves a non-daemon thread that never ends, the way a
        # stuck library keeps the interpreter from exiting.
        threading.Thread(target=time.sleep, args=(3600,)).start()
        print("running", flush=True)
        await asyncio.sleep(3600)
        return 0

    run_command(main, lambda exc: None, shutdown=Shutdown(budget_s=1.0))
"""


class TestWatchdog:
    """Once the stop began, nothing keeps the process alive past the budget."""

    def test_a_stop_that_hangs_ends_with_exit_zero(self) -> None:
        """SIGTERM to a command that ignores it and holds a non-daemon thread: exit 0."""
        proc = child(HANGS_AFTER_STOP)
        assert proc.stdout is not None and proc.stdout.readline() == "running\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

    def test_a_failure_whose_teardown_hangs_keeps_its_exit_code(self) -> None:
        """A failed command whose teardown hangs (non-daemon thread): its code, its cause first."""
        proc = child("""
            import threading, time
            from streamer.errors import StartError
            from streamer.ops.shutdown import Shutdown, run_command

            async def main(sd):
                threading.Thread(target=time.sleep, args=(3600,)).start()
                raise StartError("STREAMER_DATA_DIR /x: not a directory")

            def describe(exc):
                return 3, f"streamer: {exc}"

            run_command(main, describe, shutdown=Shutdown(budget_s=1.0))
        """)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3
        lines = err.strip().splitlines()
        assert lines[0] == "streamer: STREAMER_DATA_DIR /x: not a directory", err
        assert "Traceback" not in err

    def test_a_second_signal_forces_the_exit_at_once(self) -> None:
        """The second SIGINT runs the force hooks and exits, long before the budget."""
        proc = child("""
            import asyncio
            from streamer.ops.shutdown import Shutdown, run_command

            async def main(sd):
                sd.on_force(lambda: print("forced", flush=True))
                sd.on_signal(lambda name: print("signal", name, flush=True))
                print("running", flush=True)
                await asyncio.sleep(3600)
                return 0

            run_command(main, lambda exc: None, shutdown=Shutdown(budget_s=3600.0))
        """)
        assert proc.stdout is not None and proc.stdout.readline() == "running\n"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "signal SIGINT\n"  # the first one began the stop
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "forced" in out


    def test_a_command_run_in_process_never_ends_its_host(self) -> None:
        """cli.main(argv) inside another program (a test runner): a watchdog that runs out
        logs instead of ending the host process with os._exit. The watchdog firing is asserted
        (its force hook ran), so a host that is alive only because it never fired fails."""
        proc = child("""
            import threading
            from streamer.cli import main
            from streamer.ops.shutdown import Shutdown

            main(["check-config"])
            sd = Shutdown(budget_s=0.2)
            fired = threading.Event()
            sd.on_force(fired.set)
            sd.begin("test", 3)
            print("fired" if fired.wait(60) else "never fired", flush=True)
            print("alive", flush=True)
        """)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.splitlines()[-2:] == ["fired", "alive"], (out, err)


class TestBudget:
    """Every step of a stop gets its cap, never more than what is left of the one budget."""

    def test_before_the_stop_a_step_gets_its_cap(self) -> None:
        """No stop begun: left_s is the step's own cap."""
        assert Shutdown(budget_s=5.0).left_s(30.0) == 30.0

    async def test_after_the_stop_began_caps_are_bounded_by_the_budget(self) -> None:
        """Begun with a 5 s budget: a 30 s step gets at most 5 s; a 1 s step its 1 s."""
        sd = Shutdown(budget_s=5.0)
        handlers = {sig: signal.getsignal(sig) for sig in sd.signals}
        sd.install(asyncio.get_running_loop())
        try:
            sd.begin("test", 0)
            await asyncio.wait_for(sd.stop.wait(), 5)  # set through the loop, as from a signal
            assert sd.begun
            assert 0 < sd.left_s(30.0) <= 5.0
            assert sd.left_s(1.0) == 1.0
        finally:
            disarm(sd)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    async def test_bounded_gives_up_on_a_step_that_hangs(self) -> None:
        """A step that never finishes is cancelled when its share runs out; False says so."""
        sd = Shutdown(budget_s=0.3)
        sd.begin("test", 0)
        try:
            hung = asyncio.Event()
            assert await sd.bounded(hung.wait(), 30.0, "a hung step") is False
        finally:
            disarm(sd)

    @pytest.mark.parametrize("code", [0, 4])
    def test_the_exit_code_of_the_command_is_kept(self, code: int) -> None:
        """A command that ends by itself exits with its own code."""
        proc = child(f"""
            import sys
            from streamer.ops.shutdown import run_command

            async def main(sd):
                return {code}

            sys.exit(run_command(main, lambda exc: None))
        """)
        assert proc.wait(60) == code


class TestStopDuringLoad:
    """A stop that begins before the command runs, or while its start is in progress."""

    def test_a_stop_begun_while_loading_runs_nothing(self) -> None:
        """The stop began before the event loop ran: main never starts, exit code 0."""
        proc = child("""
            import sys
            from streamer.ops.shutdown import Shutdown, run_command

            async def main(sd):
                print("started", flush=True)
                return 5

            sd = Shutdown(budget_s=30.0)
            sd.begin("SIGTERM", 0)
            sys.exit(run_command(main, lambda exc: None, shutdown=sd))
        """)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "started" not in out

    async def test_cancelling_a_start_cancels_the_step_it_awaits(self) -> None:
        """StartClock.run cancelled (a stop during the start): the start it awaits ends too."""
        reached_end = asyncio.Event()

        async def slow_start() -> None:
            await asyncio.sleep(3600)
            reached_end.set()

        inner_started = asyncio.Event()

        async def start() -> None:
            inner_started.set()
            await slow_start()

        outer = asyncio.ensure_future(StartClock(3600).run(start()))
        await asyncio.wait_for(inner_started.wait(), 5)
        before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        outer.cancel()
        await asyncio.wait({outer}, timeout=5)
        assert outer.cancelled()
        left = [t for t in before if t is not outer and not t.done()]
        assert left == [], left
        assert not reached_end.is_set()

"""The node's teardown bound (vsseg_ros.ros.teardown) in real processes: a step that hangs, before or after the
frames were handled, and a hang in an atexit handler after main returned, each end the process within the
limit with the stuck step named, the stacks dumped and the exit status that says whether frames were lost; a
teardown that finishes keeps its own exit status."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

LIMIT = 1.5


def _run(body: str) -> tuple[int, str, float]:
    script = textwrap.dedent(
        f"""
        import atexit, sys, time
        from vsseg_ros.ros.teardown import TeardownWatchdog
        w = TeardownWatchdog(limit_s={LIMIT}).start()
        """
    ) + textwrap.dedent(body)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr, time.monotonic() - t0


@pytest.mark.parametrize("frames_done, code", [(True, 0), (False, 1)])
def test_a_stuck_step_ends_the_process_within_the_limit(frames_done, code):
    rc, text, took = _run(
        f"""
        w.step("publishing")
        if {frames_done}:
            w.frames_done()
        w.step("stopping the executor")
        time.sleep(30)  # a middleware call that never returns
        """
    )
    assert rc == code, text
    assert took < LIMIT + 5.0, took  # the interpreter's start-up plus the limit, not the 30 s
    assert "stuck stopping the executor" in text and f"exiting now with status {code}" in text
    assert text.count("most recent call first") >= 2 and "in <module>" in text  # every thread's stack


def test_a_hang_at_interpreter_exit_is_bounded_too():
    rc, text, took = _run(
        """
        atexit.register(time.sleep, 30)  # a library's finaliser that blocks
        w.frames_done()
        w.step("exiting the process")
        sys.exit(0)
        """
    )
    assert rc == 0 and "stuck exiting the process" in text, text
    assert took < LIMIT + 5.0, took


def test_a_teardown_that_finishes_keeps_its_own_exit_status():
    rc, text, _ = _run(
        """
        w.frames_done()
        w.step("exiting")
        sys.exit(3)
        """
    )
    assert rc == 3 and "stuck" not in text, text  # a forced exit would have said so, with status 0


def test_disarm_lets_the_process_live_on():
    rc, text, _ = _run(
        f"""
        w.disarm()
        time.sleep({LIMIT} + 2.5)  # past the limit and the last resort
        print("alive")
        """
    )
    assert rc == 0 and "alive" in text and "stuck" not in text, text

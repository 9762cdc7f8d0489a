"""A bound on the node's teardown: once SIGINT/SIGTERM has stopped the worker, the process ends within a time
limit, whatever the middleware does.

A supervisor (``ros2 launch``, systemd, a vehicle's watchdog) escalates to SIGKILL when a node does not exit
soon after SIGINT, and a killed node says nothing about why. The steps after the last frame (stopping the
executor, destroying DDS entities, rclpy's and the libraries' finalisers at exit) are third-party code that can
block; once one has been stuck for the limit, this watchdog logs which step it was, dumps every thread's stack to
stderr and ends the process itself. The exit status stays 0 when every frame had been handled before the stuck
step (nothing was lost; the node did stop), 1 when the frames the model held back were not published yet.

ROS-free: the node's logger comes in as a callable.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from typing import Callable, Optional

#: seconds from the start of the teardown to the forced exit: under ``ros2 launch``'s 5 s before SIGTERM plus
#: 5 s before SIGKILL, and under the test harness's 10 s
TEARDOWN_LIMIT_S = 6.0
#: the C-level last resort after that (a hang where Python code no longer runs, in a library's finaliser)
LAST_RESORT_EXTRA_S = 2.0


class TeardownWatchdog:
    """Arm with :meth:`start`, name each step with :meth:`step`, call :meth:`frames_done` once nothing can be
    lost any more. Stays armed until the process has exited (it covers the interpreter's exit as well)."""

    def __init__(self, limit_s: float = TEARDOWN_LIMIT_S, log: Optional[Callable[[str], None]] = None) -> None:
        self.limit_s = float(limit_s)
        self._log = log
        self._step = "starting the teardown"
        self._frames_done = False
        self._disarmed = threading.Event()

    def start(self) -> "TeardownWatchdog":
        threading.Thread(target=self._watch, name="vsseg-teardown-watchdog", daemon=True).start()
        # faulthandler's own thread is C code: it fires even where the interpreter can no longer run Python
        faulthandler.dump_traceback_later(self.limit_s + LAST_RESORT_EXTRA_S, exit=True)
        return self

    def step(self, name: str) -> None:
        self._step = name

    def frames_done(self) -> None:
        self._frames_done = True

    def disarm(self) -> None:
        """For callers that go on living after the teardown (tests, an embedding process)."""
        self._disarmed.set()
        faulthandler.cancel_dump_traceback_later()

    def _watch(self) -> None:
        if self._disarmed.wait(self.limit_s):
            return
        code = 0 if self._frames_done else 1
        text = (
            f"stopping did not finish within {self.limit_s:g} s: stuck {self._step}; exiting now with status "
            f"{code} ({'every frame had been handled' if code == 0 else 'held-back frames were not published'})"
            "; the threads' stacks follow"
        )
        try:
            if self._log is not None:
                self._log(text)
            else:
                print(f"[ERROR] {text}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            sys.stderr.flush()
            faulthandler.dump_traceback(all_threads=True)
        finally:
            os._exit(code)


__all__ = ["LAST_RESORT_EXTRA_S", "TEARDOWN_LIMIT_S", "TeardownWatchdog"]

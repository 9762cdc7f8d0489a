"""The node's process: start-up, signals and exit status. Entry point of ``ros2 run vsseg_ros
segmentation_node``, ``ros2 run vsseg_ros segmentation_lifecycle_node`` and ``vsseg-ros node [--lifecycle]``.

Exit status: 0 when the node stopped on SIGINT/SIGTERM (or, as a managed node, on the shutdown transition);
2 when it could not start: a bad parameter value, a model that does not load, ROS arguments rcl refuses, or
SIGINT/SIGTERM before the node was up. Either way one FATAL line says why, never a traceback.

Nothing heavy is imported at module level: the signal handlers are installed before rclpy and torch are
imported (seconds on a small computer), so a signal during those imports ends the start as cleanly as one
during model loading.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any, Optional

NODE_NAME = "segmentation_node"


class _Interrupted(BaseException):
    """SIGINT/SIGTERM while the node is still starting (BaseException: no ``except Exception`` swallows it)."""


#: the signals that interrupted the start: a library can turn :class:`_Interrupted` into an error of its own (an
#: extension module's import becomes ``ImportError: initialization failed``), which must still read as the signal
_SIGNALLED: list[int] = []


def _unless_interrupted(err: BaseException) -> None:
    """Re-raise the signal that caused ``err``, if one did."""
    if _SIGNALLED:
        raise _Interrupted(_SIGNALLED[0]) from err


def _fatal(text: str) -> None:
    """One FATAL line, through rclpy's logger when it can be had (same format as the node's other lines)."""
    try:
        import rclpy.logging

        rclpy.logging.get_logger(NODE_NAME).fatal(text)
    except _Interrupted:
        raise
    except Exception:
        print(f"[FATAL] [{time.time():.9f}] [{NODE_NAME}]: {text}", file=sys.stderr, flush=True)


def _try_shutdown() -> None:
    try:
        import rclpy

        rclpy.try_shutdown()
    except Exception:  # nothing is left to save
        pass


def main(args: Optional[list[str]] = None, lifecycle: bool = False) -> int:
    """Run the node until SIGINT/SIGTERM (or the lifecycle shutdown transition); the exit status."""
    started: list[Any] = []
    _SIGNALLED.clear()  # this start's signals only (main may run more than once in a process)

    def on_signal(signum: int, _frame: Any) -> None:
        # `ros2 launch` (non-interactive) sends a second SIGINT; it must not interrupt the teardown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not started:
            _SIGNALLED.append(signum)
            raise _Interrupted(signum)
        started[0].stop_worker()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            return _run(args, lifecycle, started)
        except Exception as err:  # e.g. an import the signal interrupted, turned into an ImportError
            _unless_interrupted(err)
            raise
    except _Interrupted as sig:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        name = signal.Signals(sig.args[0]).name if sig.args else "a signal"
        _fatal(f"cannot start: {name} arrived while the node was starting; stopped before it was up")
        _try_shutdown()
        return 2


def _run(args: Optional[list[str]], lifecycle: bool, started: list[Any]) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    # Our own SIGINT/SIGTERM handling: rclpy's would shut the context down at once, and then the frames a
    # temporal model holds back could no longer be published.
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as err:  # rcl refuses the command line (a bad remap rule, namespace, parameter file)
        _unless_interrupted(err)
        _fatal(f"cannot start: the ROS arguments were refused: {str(err).strip()}")
        _try_shutdown()
        return 2
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from vsseg_ros.ros.node import SegmentationLifecycleNode, SegmentationNode
    from vsseg_ros.ros.teardown import TeardownWatchdog

    try:
        # on_up: the node counts as started from its first output on, not only once its constructor returned
        # (a SIGINT in between, after a client saw the class map, used to exit 2 as "while starting")
        node = (SegmentationLifecycleNode if lifecycle else SegmentationNode)(
            worker_thread=False, on_up=lambda up: None if started else started.append(up)
        )
    except Exception as err:  # a parameter value, the model, an override of the wrong type
        _unless_interrupted(err)
        _fatal(f"cannot start: {err}")
        _try_shutdown()
        return 2
    if not started:
        started.append(node)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spinner = threading.Thread(target=spin, name="vsseg-executor", daemon=True)
    spinner.start()
    try:
        node.run_worker()  # inference in the main thread; returns once stop_worker() ran (signal, shutdown)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if len(node.cameras) > 1:
            counters: Any = {cam.topic: cam.counters.as_dict() for cam in node.cameras}
        else:
            counters = node.camera.counters.as_dict() if node.camera is not None else {}
        node.get_logger().info(f"stopping; frames {counters}")
        # The process ends within TEARDOWN_LIMIT_S from here, whatever the middleware's teardown does.
        watchdog = TeardownWatchdog(log=node.get_logger().error).start()
        watchdog.step("publishing the frames the model holds back")
        node.finish_frames()  # while ROS is fully up (publishing needs no executor)
        watchdog.frames_done()
        # Stop the executor and join its threads before anything is torn down: a thread still waiting inside
        # rclpy when the interpreter exits ends the process with std::terminate (SIGABRT) instead of 0.
        watchdog.step("stopping the executor")
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        watchdog.step("destroying the node")
        node.destroy_node()
        watchdog.step("shutting rclpy down")
        rclpy.try_shutdown()
        watchdog.step("exiting the process (atexit handlers, the libraries' finalisers)")
    return 0


def lifecycle_main(args: Optional[list[str]] = None) -> int:
    return main(args, lifecycle=True)


if __name__ == "__main__":
    sys.exit(main())

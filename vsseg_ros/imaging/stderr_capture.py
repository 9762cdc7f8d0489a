"""Keep what C image libraries print (libjpeg's "Corrupt JPEG data: ...", libpng's "libpng error: ...") out of
the process's stderr, which is the node's log.

libjpeg and libpng write their warnings straight to file descriptor 2, below Python, and OpenCV offers no way to
stop them; one corrupt frame per camera frame floods the log. :func:`library_messages` points fd 2 at a private
temporary file while a decode runs and hands back the lines it caught, so the caller can put them into its own
(once-per-kind) error. Another thread may log in that window (rclpy writes its log records to fd 2 too): lines
that look like ROS log records (``[INFO] [...``) are written back to the real stderr, not swallowed.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator, Optional

_ROS_RECORD = re.compile(rb"^\[(DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\]")
_lock = threading.Lock()
_sink: Optional[int] = None  # the temporary file's descriptor, opened once per process


def _sink_fd() -> int:
    global _sink
    if _sink is None:
        fd, path = tempfile.mkstemp(prefix="vsseg_stderr_")
        os.unlink(path)  # only the descriptor is needed
        _sink = fd
    return _sink


@contextlib.contextmanager
def library_messages() -> Iterator[list[str]]:
    """Run the body with fd 2 redirected; the yielded list holds, afterwards, the lines the body printed there.

    Calls from several threads take turns (fd 2 is one per process). Where fd 2 cannot be duplicated (closed),
    the body runs without redirection and the list stays empty.
    """
    caught: list[str] = []
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield caught
            return
        sink = _sink_fd()
        os.ftruncate(sink, 0)
        os.lseek(sink, 0, os.SEEK_SET)
        os.dup2(sink, 2)
        try:
            yield caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(sink, 0, os.SEEK_END)
            text = os.pread(sink, min(size, 1 << 16), 0) if size else b""
            passthrough = []
            for line in text.splitlines():
                if _ROS_RECORD.match(line):
                    passthrough.append(line)
                elif line.strip():
                    caught.append(line.decode("utf-8", "replace").strip())
            if passthrough:
                os.write(2, b"\n".join(passthrough) + b"\n")


__all__ = ["library_messages"]

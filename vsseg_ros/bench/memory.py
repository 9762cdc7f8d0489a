"""A process's resident memory from ``/proc/<pid>/status``: now (VmRSS), its peak (VmHWM), and resetting that
peak for this process, so that one call's own peak can be measured. The one reader the benchmarks, the
decode-bomb and fuzz measurements and the tests use; None where ``/proc`` is not available (not Linux, process gone)."""

from __future__ import annotations

from typing import Optional, Union

Pid = Union[int, str]  # a process id, or "self"


def _status_mb(pid: Pid, key: str) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024.0  # the kernel reports kB
    except OSError:
        pass
    return None


def rss_mb(pid: Pid = "self") -> Optional[float]:
    """Resident memory of a live process now (VmRSS) in MiB."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: Pid = "self") -> Optional[float]:
    """Peak resident memory of a live process (VmHWM) in MiB."""
    return _status_mb(pid, "VmHWM:")


def reset_peak_rss() -> bool:
    """Reset this process's peak (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True

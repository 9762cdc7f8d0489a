"""QoS profiles by name, as parameters name them (Isaac ROS style: a profile plus a depth)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_PROFILES = ("sensor_data", "best_effort", "reliable")


def qos_profile(name: str, depth: int) -> QoSProfile:
    """``sensor_data`` and ``best_effort``: best-effort, volatile (what a camera consumer should use: it
    matches reliable and best-effort publishers alike); ``reliable``: reliable, volatile."""
    if name not in QOS_PROFILES:
        raise ValueError(f"unknown QoS profile {name!r}; accepted: {', '.join(QOS_PROFILES)}")
    reliability = ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE
    )


def latched_qos() -> QoSProfile:
    """Reliable + transient-local, depth 1: a late subscriber still gets the one message (class map)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )

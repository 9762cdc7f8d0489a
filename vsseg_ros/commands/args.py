"""Option types more than one command parses: ``HEIGHTxWIDTH`` sizes (frames, network inputs) and ``NAME=VALUE``
node parameters."""

from __future__ import annotations

import argparse
from typing import Union

NATIVE = ("0", "0x0", "native", "frame")  # network input sizes meaning "each frame's own size"


def size(text: str) -> tuple[int, int]:
    """A positive ``HEIGHTxWIDTH`` such as ``360x480``."""
    try:
        h, w = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 360x480, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def network_size(text: str) -> tuple[int, int]:
    """A network input size: :func:`size` within the limits a model config accepts
    (:func:`vsseg_ros.core.config.parse_input_size`)."""
    from vsseg_ros.core.config import ConfigError, parse_input_size

    h, w = size(text)
    try:
        parse_input_size((h, w), "--input-size")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return h, w


def network_size_or_native(text: str) -> Union[tuple[int, int], int]:
    """:func:`network_size`, or 0 (each frame's own size) for one of :data:`NATIVE`."""
    if text.strip().lower() in NATIVE:
        return 0
    try:
        return network_size(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (or 0 for each frame's own size)") from None


def param(text: str) -> tuple[str, object]:
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as worker_threads=1, got {text!r}")
    return name.strip(), yaml.safe_load(value)

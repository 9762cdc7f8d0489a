"""Option types more than one command parses: ``HEIGHTxWIDTH`` sizes and ``NAME=VALUE`` node parameters."""

from __future__ import annotations

import argparse


def size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 360x480, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def param(text: str) -> tuple[str, object]:
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as worker_threads=1, got {text!r}")
    return name.strip(), yaml.safe_load(value)

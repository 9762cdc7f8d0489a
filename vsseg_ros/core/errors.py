"""Errors that both the checkpoint code and the models raise, in a module both can import (no import cycle)."""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what was expected."""

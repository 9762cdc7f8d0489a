"""The command line both trainers share once their arguments are parsed: the command recorded in the
checkpoints, errors of the recipe, the data or ``--resume`` as one ``error:`` line (exit status 2), and the path
of ``best.pt`` printed by rank 0."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from vsseg_ros.training.recipe import TrainConfigError


def run_command(
    parser: argparse.ArgumentParser,
    argv: Optional[Sequence[str]],
    train: Callable[[argparse.Namespace, str], Union[Path, str]],
) -> int:
    """Parse ``argv`` (None: ``sys.argv``) with ``parser`` and call ``train(args, command)``; the exit status."""
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join([*shlex.split(parser.prog), *given])  # the prog is "python -m <trainer>"
    try:
        best = train(args, command)
    except (TrainConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(best)
    return 0

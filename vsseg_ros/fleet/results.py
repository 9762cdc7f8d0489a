"""The results folder of a fleet evaluation (``--results DIR``): one JSON per finished bag, the combined JSON and
the report, so that a rerun skips what is done and an interrupted run loses at most the bags in flight.

Layout: ``DIR/run.json`` (the settings and model the results belong to; a rerun with other settings is refused),
``DIR/bags/<task key>.json`` (one record per bag or chunk, written atomically: a temporary file renamed over
the final name, so a reader never sees half a record and a retried or resumed bag replaces its own record instead
of adding a second), ``DIR/fleet.json`` (the merged result) and ``DIR/report/`` (index.md and pictures).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from vsseg_ros.fleet.discover import FleetError

RUN_FILE = "run.json"
BAGS_DIR = "bags"
FLEET_FILE = "fleet.json"
REPORT_DIR = "report"


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path``, all or nothing (a temporary file beside it, flushed, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class ResultsDir:
    """``DIR`` for the run whose settings are ``config`` (model identity, scoring settings: what the numbers
    depend on). :meth:`open` refuses a folder holding another configuration's results."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = Path(root)
        self.config = config
        self.bags = self.root / BAGS_DIR

    def open(self) -> "ResultsDir":
        if self.root.exists() and not self.root.is_dir():
            raise FleetError(f"--results {self.root} is a file; give a folder (created if missing)")
        run = self.root / RUN_FILE
        if run.is_file():
            try:
                stored = json.loads(run.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise FleetError(
                    f"--results {self.root}: {RUN_FILE} is unreadable ({err}); remove the folder or choose another"
                ) from None
            differs = sorted(k for k in set(stored) | set(self.config) if stored.get(k) != self.config.get(k))
            if differs:
                shown = "; ".join(f"{k}: {stored.get(k)!r} there, {self.config.get(k)!r} now" for k in differs[:6])
                raise FleetError(
                    f"--results {self.root} holds results of another model or settings ({shown}); "
                    "resume with the same ones, or give another --results folder"
                )
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise FleetError(
                f"--results {self.root} is not empty and is not a fleet results folder (no {RUN_FILE}); "
                "give an empty or new folder"
            )
        self.bags.mkdir(parents=True, exist_ok=True)
        if not run.is_file():
            write_json_atomic(run, self.config)
        return self

    def path(self, key: str) -> Path:
        return self.bags / f"{key}.json"

    def load(self, key: str) -> Optional[dict[str, Any]]:
        """The stored record of a task, or None (never stored, or unreadable: then it is scored again)."""
        p = self.path(key)
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def write(self, record: dict[str, Any]) -> Path:
        p = self.path(record["key"])
        write_json_atomic(p, record)
        return p

    def records(self) -> Iterator[dict[str, Any]]:
        for p in sorted(self.bags.glob("*.json")):
            record = self.load(p.stem)
            if record is not None:
                yield record


__all__ = ["BAGS_DIR", "FLEET_FILE", "REPORT_DIR", "RUN_FILE", "ResultsDir", "write_json_atomic"]

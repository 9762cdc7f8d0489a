"""Which bags a fleet evaluation scores: patterns (globs, folders, text files of paths) to bags with an identity,
and bags to tasks (a whole bag, or chunks of it cut where its sequences start).

A bag's identity is its resolved path, the total size of its files and their newest modification time: a result
stored under it (:mod:`vsseg_ros.fleet.results`) is reused only while the bag is unchanged, and a bag named twice
(two patterns, a link) is scored once. No ROS import, nothing is decoded here.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

STORAGE_SUFFIXES = (".mcap", ".db3")
LIST_SUFFIXES = (".txt", ".list", ".lst")
#: how deep a folder is searched for bags
MAX_DEPTH = 8


class FleetError(ValueError):
    """Input a fleet evaluation cannot use (no bag found, a results folder of another run); says what and why."""


@dataclass(frozen=True)
class BagRef:
    """One bag: ``path`` (a bag folder with metadata.yaml, or a lone .mcap/.db3 file), resolved, and identity."""

    path: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        """A file-name-safe key unique to this bag's path and content stamp."""
        digest = hashlib.sha1(f"{self.path}|{self.size}|{self.mtime_ns}".encode()).hexdigest()[:16]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.path).name)[-60:] or "bag"
        return f"{stem}-{digest}"

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class BagTask:
    """A unit of work: a bag, or the chunk ``index`` of ``chunks`` of it (frames stamped in [start_ns, stop_ns))."""

    bag: BagRef
    index: int = 0
    chunks: int = 1
    start_ns: Optional[int] = None
    stop_ns: Optional[int] = None
    #: image messages in the task (for the progress bar; 0 = unknown)
    frames: int = 0

    @property
    def key(self) -> str:
        return self.bag.key if self.chunks == 1 else f"{self.bag.key}-c{self.index + 1:03d}of{self.chunks:03d}"

    @property
    def label(self) -> str:
        return self.bag.path if self.chunks == 1 else f"{self.bag.path} [chunk {self.index + 1}/{self.chunks}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "bag": asdict(self.bag),
            "index": self.index,
            "chunks": self.chunks,
            "start_ns": self.start_ns,
            "stop_ns": self.stop_ns,
            "frames": self.frames,
        }


def identity(path: Path) -> BagRef:
    """The :class:`BagRef` of a bag folder or file (sizes and times of the files that make it up)."""
    path = path.resolve()
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return BagRef(str(path), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0))


def _is_bag_dir(p: Path) -> bool:
    return (p / "metadata.yaml").is_file()


def _bags_below(folder: Path, depth: int = 0) -> list[Path]:
    """Bag folders and lone storage files under ``folder`` (a bag folder is not searched further)."""
    if _is_bag_dir(folder):
        return [folder]
    found: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return found
    for e in entries:
        if e.is_dir() and depth < MAX_DEPTH:
            found += _bags_below(e, depth + 1)
        elif e.is_file() and e.suffix.lower() in STORAGE_SUFFIXES:
            found.append(e)
    return found


def _expand(pattern: str, base: Path, searched: list[str], depth: int = 0) -> list[Path]:
    p = Path(pattern).expanduser()
    if not p.is_absolute():
        p = base / p
    if p.is_dir():
        found = _bags_below(p)
        if not found:
            searched.append(f"{pattern}: a folder with no bag in it (no metadata.yaml, .mcap or .db3 below it)")
        return found
    if p.is_file():
        if p.suffix.lower() in STORAGE_SUFFIXES:
            return [p]
        if p.name == "metadata.yaml":
            return [p.parent]
        if p.suffix.lower() == ".bag":
            searched.append(f"{pattern}: a ROS 1 bag; convert it first (`rosbags-convert --src {p} --dst OUT`)")
            return []
        if p.suffix.lower() in LIST_SUFFIXES or (depth == 0 and p.suffix.lower() != ".yaml"):
            return _from_list(p, searched, depth)
        searched.append(
            f"{pattern}: not a bag (a folder with metadata.yaml, an .mcap or .db3 file) nor a list of bags (.txt)"
        )
        return []
    matches = sorted(glob.glob(str(p), recursive=True))
    if not matches:
        searched.append(
            f"{pattern}: " + ("no path matches this pattern" if glob.has_magic(str(p)) else "no such file or folder")
        )
        return []
    found = []
    for m in map(Path, matches):
        if m.is_dir():
            found += _bags_below(m)
        elif m.suffix.lower() in STORAGE_SUFFIXES:
            found.append(m)
    if not found:
        searched.append(f"{pattern}: {len(matches)} path(s) match, none is a bag or holds one")
    return found


def _from_list(path: Path, searched: list[str], depth: int) -> list[Path]:
    """A text file naming one bag, folder or pattern per line (``#`` comments; relative to the file's folder)."""
    if depth >= 2:
        searched.append(f"{path}: a list inside a list inside a list is not followed")
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        searched.append(f"{path}: not a readable text list of bags ({err})")
        return []
    found: list[Path] = []
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        searched.append(f"{path}: a list of bags with no entry in it")
    for line in lines:
        found += _expand(line, path.parent, searched, depth + 1)
    return found


def find_bags(patterns: Sequence[str]) -> list[BagRef]:
    """Every bag the patterns name, once each, in the order first named. Raises :class:`FleetError` listing
    what was searched when none is found."""
    if not patterns:
        raise FleetError("--bags needs at least one pattern (a glob, a folder of bags or a text file of paths)")
    searched: list[str] = []
    seen: dict[str, BagRef] = {}
    for pattern in patterns:
        for path in _expand(str(pattern), Path.cwd(), searched):
            try:
                ref = identity(path)
            except OSError as err:
                searched.append(f"{path}: cannot be read ({err})")
                continue
            seen.setdefault(ref.path, ref)
    if not seen:
        raise FleetError(
            "no bag matches "
            + " ".join(repr(str(p)) for p in patterns)
            + "; searched:\n  "
            + "\n  ".join(searched)
            + "\n(a bag is a folder with metadata.yaml, or an .mcap or .db3 "
            "file; a .txt file lists bags, folders or patterns one per line)"
        )
    for line in searched:
        warnings.warn(f"--bags: {line}", UserWarning, stacklevel=2)
    return list(seen.values())


def plan_tasks(
    bags: Iterable[BagRef], image_topic: Optional[str] = None, gt_topic: Optional[str] = None, chunk_frames: int = 0
) -> list[BagTask]:
    """One task per bag, or with ``chunk_frames`` > 0, a bag of more frames cut into chunks of at least that many,
    each cut where one of the bag's sequences starts (there the evaluation resets the model and the temporal
    metrics anyway, so chunks score exactly as the whole bag). A bag that cannot be opened becomes one task: its
    error is recorded when it runs, like any other."""
    from vsseg_ros.bags.reader import BagFrames

    tasks: list[BagTask] = []
    for bag in bags:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the task reports them
                frames = BagFrames(bag.path, image_topic=image_topic, gt_topic=gt_topic)
            total, spans = len(frames), frames.sequence_spans()
        except Exception:  # noqa: BLE001 - any failure is the task's to record, with its message
            tasks.append(BagTask(bag))
            continue
        cuts = _cuts(spans, chunk_frames) if chunk_frames and total > chunk_frames else []
        if not cuts:
            tasks.append(BagTask(bag, frames=total))
            continue
        edges = [None] + [first for first, _ in cuts[1:]] + [None]
        for i, (_, count) in enumerate(cuts):
            tasks.append(BagTask(bag, i, len(cuts), edges[i], edges[i + 1], count))
    return tasks


def _cuts(spans: Sequence[tuple[str, int, Optional[int]]], chunk_frames: int) -> list[tuple[int, int]]:
    """(first stamp, frames) of each chunk: whole sequences grouped until a chunk has ``chunk_frames``."""
    if len(spans) < 2 or any(count is None for _, _, count in spans):
        return []
    chunks: list[list[int]] = []
    for _, first, count in spans:
        if not chunks or chunks[-1][1] >= chunk_frames:
            chunks.append([first, 0])
        chunks[-1][1] += int(count or 0)
    if len(chunks) > 1 and chunks[-1][1] < chunk_frames // 2:  # a short tail joins the chunk before it
        chunks[-2][1] += chunks.pop()[1]
    return [(a, b) for a, b in chunks] if len(chunks) > 1 else []


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["BagRef", "BagTask", "FleetError", "cpu_count", "find_bags", "identity", "plan_tasks"]

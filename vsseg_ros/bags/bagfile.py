"""Finding and opening a ROS 2 bag (mcap or sqlite3, metadata versions 4-9): which path to open, its
metadata.yaml, the rosbags Reader with its topics, and every failure of those turned into :class:`BagError`
saying what is wrong and what is accepted (a missing path, a ROS 1 bag, a lost metadata.yaml, a truncated or
corrupt file).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

_STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


class BagError(ValueError):
    """A bag that cannot be used as asked; the message says what is wrong and what is accepted."""


class BagWarning(UserWarning):
    """Something in a bag that is counted and left out (ground truth matching no image)."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


def describe_topics(topics: dict[str, TopicInfo]) -> str:
    if not topics:
        return "the bag has no topics"
    return "the bag has: " + "; ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in topics.values())


def _corrupt_hint(err: BaseException) -> str:
    text = str(err)
    if "end magic" in text or "footer" in text.lower():
        return (
            " (the mcap file has no valid footer: it was cut off while recording or is damaged; the mcap CLI's "
            "`mcap recover` can rebuild a readable copy)"
        )
    if "malformed" in text or "not a database" in text or "missing tables" in text:
        return " (the sqlite3 database is damaged or not a rosbag2 database)"
    return " (the bag is truncated or corrupt)"


def _read_metadata(folder: Path) -> dict[str, Any]:
    """``rosbag2_bagfile_information`` of ``folder/metadata.yaml`` ({} when absent or unreadable: rosbags
    reports what is wrong with it when opening)."""
    import yaml

    try:
        doc = yaml.safe_load((folder / "metadata.yaml").read_text())
        info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
        return info if isinstance(info, dict) else {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}


def resolve_bag_path(path: Union[str, Path]) -> Path:
    """The path rosbags should open: a bag folder with ``metadata.yaml``, or a lone ``.mcap``/``.db3`` file
    (also when it lies in a folder whose metadata.yaml is lost)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BagError(
            f"bag not found: {path} (expected a rosbag2 folder with metadata.yaml, or an .mcap or .db3 file)"
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".bag":
            raise BagError(f"{path} is a ROS 1 bag; convert it first (`rosbags-convert --src {path} --dst OUT`)")
        if suffix not in _STORAGE_SUFFIXES:
            raise BagError(
                f"{path} is not a ROS 2 bag file: expected a folder with metadata.yaml, or an .mcap or .db3 file"
            )
        meta = _read_metadata(path.parent)
        listed = [Path(p).name for p in meta.get("relative_file_paths") or []]
        return path.parent if listed == [path.name] else path  # the folder also gives custom_data and QoS
    if (path / "metadata.yaml").is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _STORAGE_SUFFIXES)
    if len(files) == 1:
        warnings.warn(f"{path} has no metadata.yaml; reading {files[0].name} directly", BagWarning, stacklevel=3)
        return files[0]
    if files:
        raise BagError(
            f"{path} has no metadata.yaml and several storage files ({', '.join(p.name for p in files)}); "
            "pass one of them, or restore metadata.yaml (`ros2 bag reindex`)"
        )
    raise BagError(f"{path} is not a ROS 2 bag: no metadata.yaml, .mcap or .db3 file in it")


class OpenBag:
    """An opened rosbags Reader with its topics, metadata and errors turned into :class:`BagError`."""

    def __init__(self, path: Union[str, Path]) -> None:
        from rosbags.rosbag2 import Reader

        self.path = resolve_bag_path(path)
        self.meta = _read_metadata(self.path) if self.path.is_dir() else {}
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except BagError:
            raise
        except Exception as err:  # rosbags' ReaderError and whatever a damaged file raises underneath
            raise BagError(f"cannot open bag {self.path}: {err}{_corrupt_hint(err)}") from err
        self.version: Optional[int] = self.meta.get("version")
        self.storage = self.meta.get("storage_identifier") or _STORAGE_SUFFIXES.get(self.path.suffix.lower(), "")
        self.distro: Optional[str] = self.meta.get("ros_distro")
        self.custom: dict[str, str] = dict(self.meta.get("custom_data") or {})
        self.topics: dict[str, TopicInfo] = {
            name: TopicInfo(name, info.msgtype or "(several types)", info.msgcount)
            for name, info in sorted(self.reader.topics.items())
        }

    def connection(self, topic: str) -> Any:
        return next(c for c in self.reader.connections if c.topic == topic)

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, serialized bytes) of ``topics`` in log-time order."""
        conns = [c for c in self.reader.connections if c.topic in topics]
        n = 0
        try:
            for conn, log_ns, raw in self.reader.messages(connections=conns):
                n += 1
                yield conn.topic, log_ns, raw
        except GeneratorExit:
            raise
        except Exception as err:
            raise BagError(
                f"bag {self.path}: reading failed after {n} messages of {', '.join(topics)}: {err}{_corrupt_hint(err)}"
            ) from err

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # already closed or never fully opened
            pass


def bag_topics(path: Union[str, Path]) -> dict[str, TopicInfo]:
    """The topics of a bag with their types and message counts."""
    bag = OpenBag(path)
    try:
        return bag.topics
    finally:
        bag.close()

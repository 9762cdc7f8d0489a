"""The Fast DDS profile the node and its local runs use: a shared-memory transport sized for whole camera frames
(see ``fastdds_large_images.xml`` beside this file for why)."""

from __future__ import annotations

from pathlib import Path

#: shared-memory transport sized for whole camera frames (``FASTDDS_DEFAULT_PROFILES_FILE``)
FASTDDS_PROFILE = Path(__file__).with_name("fastdds_large_images.xml")

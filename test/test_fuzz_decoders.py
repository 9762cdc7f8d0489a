"""Property-based fuzzing of the decoders (hypothesis, derandomized, no example database): a bounded number of
examples here; `vsseg-ros fuzz-decoders --examples 10000` is the long run (docs/node.md has its numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from hypothesis import given

from vsseg_ros.hostile import fuzz as fz

EXAMPLES = 300


@fz.settings(EXAMPLES)
@given(fz.image_fields())
def test_any_image_fields_decode_to_their_size_or_raise_image_decode_error(fields):
    fz.check_image(fields, Counter())


@fz.settings(EXAMPLES)
@given(fz.compressed_fields())
def test_any_compressed_bytes_decode_to_their_declared_size_or_raise_image_decode_error(fmt_data):
    fz.check_compressed(*fmt_data, Counter())


def test_the_fuzz_command_counts_and_bounds_memory(tmp_path):
    """The command in a fresh process: both decoders, outcomes counted, peak RSS growth within the bound."""
    out = tmp_path / "fuzz.json"
    done = subprocess.run(
        [sys.executable, "-m", "vsseg_ros.commands.fuzz_decoders", "--examples", "200", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["error"] is None and report["max_decode_rss_growth_mb"] < fz.BOUND_MB
    for name in ("Image", "CompressedImage"):
        outcomes = report["decoders"][name]["outcomes"]
        assert report["decoders"][name]["examples"] >= 200
        assert any(k.startswith("decoded") for k in outcomes) and any(k.startswith("refused") for k in outcomes)

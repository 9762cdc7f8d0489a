"""`vsseg-ros mar-analysis`: the change counts partition the labelled pixels as they should, the rebuilt memory
says which hard keys lie on boundaries, and the command runs end to end on a tiny folder dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train_temporal import SIZE, _folder
from vsseg_ros.commands import mar_analysis as mar_command
from vsseg_ros.core.checkpoint import save_checkpoint
from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.loading import load_segmenter
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.models.temporal import TemporalSegNet
from vsseg_ros.core.segmenter import Frame
from vsseg_ros.evaluation import mar_analysis as ma

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_changes_are_counted_by_kind_band_and_class() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    base = np.array([[0, 1, 1, 0], [1, 0, 0, 0]], np.uint8)
    new = np.array([[0, 0, 0, 1], [2, 0, 0, 1]], np.uint8)
    band = np.array([[False, True, True, False], [False, False, False, False]])
    c = ma.count_changes(base, new, gt, band, 3, 255)
    # per pixel: (0,1) fixed on the band, (0,2) broken on the band, (0,3) fixed, (1,0) wrong to wrong,
    # (1,2) unchanged and wrong, (1,3) ignored
    assert c["labelled"].sum() == 7 and c["labelled"][0].sum() == 2
    assert c["fixed"].tolist() == [[1, 0, 0], [0, 1, 0]]
    assert c["broken"].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert c["wrong_to_wrong"].tolist() == [[0, 0, 0], [1, 0, 0]]
    assert c["changed"].sum() == 4
    s = ma.summarise_changes(c, ["a", "b", "c"])
    assert s["all"]["net_fixed_share"] == pytest.approx(1 / 7)
    assert s["boundary_share_of_changes"] == pytest.approx(0.5)
    assert s["per_class"]["c"]["labelled"] == 0 and s["per_class"]["c"]["changed_share"] is None
    assert s["all"]["baseline_accuracy"] == pytest.approx(3 / 7) and s["all"]["mar_accuracy"] == pytest.approx(4 / 7)


def test_the_rebuilt_memory_says_where_its_keys_lie() -> None:
    # class 0 everywhere; confidence lowest on the boundary cells (column 0): the hard keys are all there
    h, w = 4, 6
    feature = torch.randn(1, 5, h, w)
    logits = torch.zeros(1, 2, h, w)
    logits[:, 0] = torch.linspace(1.0, 6.0, w).view(1, 1, w)  # confidence grows with the column
    label = torch.zeros(1, h, w, dtype=torch.long)
    label[0, 0, 5] = 255
    edge = torch.zeros(1, h, w, dtype=torch.bool)
    edge[:, :, 0] = True
    mem = ma.memory_contents([(feature, logits, label, edge)], 2, 3, 255)
    c0 = mem["per_class"][0]
    assert c0["correct_pixels"] == h * w - 1 and c0["baseline_accuracy"] == 1.0
    assert mem["per_class"][1]["baseline_accuracy"] is None  # no labelled cell
    assert c0["hard_on_boundary"] == 1.0 and c0["prototype_on_boundary"] == 0.0
    assert c0["boundary_base_rate"] == pytest.approx(4 / 23)
    assert mem["keys"].shape == (6, 5) and mem["empty_classes"] == [1]
    assert any(torch.allclose(mem["keys"][0], feature[0, :, y, 0]) for y in range(h))  # without the flag
    assert ma.cell_flags(np.eye(4, dtype=bool), (2, 2), 2).tolist() == [[True, False], [False, True]]


def test_the_command_runs_end_to_end(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    _folder(data)
    base = ModelConfig(name="tiny", head_channels=16, num_classes=2, input_size=SIZE, output_stride=16)
    cmap = ClassMap(names=("background", "square"), colors=((0, 0, 0), (255, 255, 255)))
    torch.manual_seed(0)
    perframe = PerFrameSegNet(base)
    base_path = save_checkpoint(tmp_path / "base.pt", perframe, base, cmap, "tiny")
    cfg = base.replace(temporal={"frames": 1, "stf": None, "mar": {"slots_per_class": 2, "dim": 8, "ffn": 8}})
    mar = TemporalSegNet(cfg)
    mar.perframe.load_state_dict(perframe.state_dict())
    mar.mar.set_memory(torch.randn(4, 16), torch.randn(4, 16))
    mar_path = save_checkpoint(tmp_path / "mar.pt", mar, cfg, cmap, "tiny_mar")
    args = argparse.Namespace(
        model=str(mar_path),
        baseline=str(base_path),
        dataset="folder",
        root=data,
        split="val",
        memory_split="train",
        boundary_radius=1,
        limit=0,
        json=tmp_path / "a.json",
        threads=0,
        quiet=True,
    )
    assert mar_command.run(args) == 0
    assert "changes on 6 frames of val" in capsys.readouterr().out
    out = json.loads((tmp_path / "a.json").read_text())
    ch = out["changes"]
    assert ch["all"]["changed"] == ch["boundary"]["changed"] + ch["interior"]["changed"]
    assert ch["all"]["changed"] == ch["all"]["fixed"] + ch["all"]["broken"] + ch["all"]["wrong_to_wrong"]
    # the same count straight from the two segmenters
    from vsseg_ros.data.registry import open_dataset

    val = open_dataset("folder", data, "val")
    segs = [load_segmenter(str(base_path), device="cpu"), load_segmenter(str(mar_path), device="cpu")]
    changed = 0
    for i in range(len(val)):
        image, label = val.load(i)
        a, b = (s.push(Frame(image=image, stamp_ns=i * 10**8)).labels for s in segs)
        changed += int(((a != b) & (label != 255)).sum())
    assert ch["all"]["changed"] == changed
    assert set(out["memory"]["per_class"]) == {"background", "square"}
    args.model = str(base_path)  # a per-frame model has no MAR
    assert mar_command.run(args) == 2 and "not a model with MAR" in capsys.readouterr().err

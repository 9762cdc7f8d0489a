"""The trainer options of issue 22: MAR on a per-frame model (a temporal window of one frame, trained by the
temporal trainer with the per-frame network frozen and the classifier at its own learning rate), and the per-frame
trainer's warm start (``train.init``), weight average (``train.ema``), hard-pixel mining (``train.ohem_keep``) and
Lovasz-softmax loss (``train.lovasz_weight``).
All on tiny synthetic data: a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from test_train_smoke import _recipe as _perframe_recipe, _synthetic_camvid
from test_train_temporal import SIZE, tiny_perframe_start
from vsseg_ros.core.checkpoint import load_checkpoint
from vsseg_ros.core.classes import IGNORE_ID
from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.core.loading import load_segmenter
from vsseg_ros.core.segmenter import Frame
from vsseg_ros.core.temporal_config import TemporalConfig
from vsseg_ros.core.temporal_segmenter import TemporalSegmenter
from vsseg_ros.training.losses import lovasz_softmax, ohem_cross_entropy, segmentation_loss
from vsseg_ros.training.optim import WeightAverage
from vsseg_ros.training.perframe import train
from vsseg_ros.training.recipe import TrainConfigError, load_recipe
from vsseg_ros.training.temporal import train_temporal

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


# -- a window of one frame: MAR alone -------------------------------------------------------------------


def test_a_window_of_one_frame_takes_mar_only() -> None:
    t = TemporalConfig.from_dict({"frames": 1, "stf": None, "mar": {"slots_per_class": 2}})
    assert t.frames == 1 and t.stf is None and t.mar is not None
    for bad in (
        {"frames": 1, "mar": {}},  # the default STF
        {"frames": 1, "stf": None, "mar": {}, "mode": "centered"},
        {"frames": 1, "stf": None, "flow2seg": {}},
    ):
        with pytest.raises(ConfigError, match=r"temporal\.frames=1"):
            TemporalConfig.from_dict(bad)
    cfg = ModelConfig.from_yaml(REPO / "config" / "models" / "mbv2_lite_mar.yaml")
    assert cfg.temporal["frames"] == 1 and cfg.temporal["stf"] is None and cfg.temporal["mar"] is not None


def _mar_recipe(tmp_path: Path) -> tuple[Path, Path]:
    data, base, init = tiny_perframe_start(tmp_path)
    model = {
        **base.to_dict(),
        "temporal": {
            "frames": 1,
            "mode": "causal",
            "stf": None,
            "mar": {"slots_per_class": 2, "dim": 8, "ffn": 16, "dropout": 0.0},
        },
    }
    recipe = {
        "stage": "temporal",
        "model": model,
        "model_id": "tiny_mar",
        "init": str(init),
        "data": {
            "dataset": "folder",
            "root": str(data),
            "clip_size": list(SIZE),
            "clips": {"occluders": 0.0, "blur": 0.0, "noise": 0.0},
        },
        "train": {
            "batch_size": 2,
            "stf_iters": 0,
            "mar_iters": 3,
            "warmup_iters": 1,
            "val_every_min": 0,
            "mar_lr": 1e-3,
            "classifier_lr_mult": 4.0,
            "log_every": 1,
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, init


def test_mar_on_a_frozen_perframe_model_trains_and_streams_with_a_window_of_one(tmp_path: Path) -> None:
    recipe, init = _mar_recipe(tmp_path)
    out = tmp_path / "out"
    best = train_temporal(recipe, out_dir=out, progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["mar"]  # no STF stage
    state = torch.load(out / "last.pt", weights_only=True)
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert len(lrs) == 2 and lrs[1] == pytest.approx(4.0 * lrs[0])  # MAR, then the classifier at 4x
    weights = state["model"]
    assert float(weights["mar.memory_key"].abs().sum()) > 0  # the memory was built
    # the per-frame network stays as it was, except its classifier
    start = load_checkpoint(init).state_dict
    changed = {k for k, v in start.items() if not torch.equal(v.float(), weights["perframe." + k].float())}
    assert changed == {"head.classifier.weight", "head.classifier.bias"}
    # best.pt streams through TemporalSegmenter with a window of one, as perframe -> MAR -> classifier
    loaded = load_segmenter(str(best), device="cpu")
    assert isinstance(loaded, TemporalSegmenter) and loaded.window_size == 1
    ckpt = load_checkpoint(best)
    model = ckpt.build_model()
    seg = TemporalSegmenter(model, ckpt.class_map, ckpt.model_id, fold_bn=False, return_logits=True)
    rng = np.random.default_rng(1)
    for t in range(2):
        image = rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)
        res = seg.push(Frame(image=image, stamp_ns=t * 10**8, camera_id="c"))
        assert res is not None and res.frames_fused == 1
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        x = (x - torch.tensor(model.config.mean).view(1, 3, 1, 1)) / torch.tensor(model.config.std).view(1, 3, 1, 1)
        with torch.no_grad():
            want = model.perframe.classify(model.mar(model.perframe.forward_features(x)))
        assert torch.allclose(res.logits, want, atol=1e-4), float((res.logits - want).abs().max())


# -- the per-frame trainer: hard pixels, weight average, warm start --------------------------------------


def test_ohem_averages_the_hardest_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    label = torch.randint(0, 3, (2, 4, 5))
    label[0, 0] = IGNORE_ID
    weight = torch.tensor([1.0, 2.0, 0.5])
    full = F.cross_entropy(logits, label, weight=weight, ignore_index=IGNORE_ID)
    assert torch.allclose(ohem_cross_entropy(logits, label, weight, 1.0), full)
    per = F.cross_entropy(logits, label, ignore_index=IGNORE_ID, reduction="none")[label != IGNORE_ID]
    hardest = per.sort(descending=True).values[: round(0.25 * per.numel())]
    assert torch.allclose(ohem_cross_entropy(logits, label, None, 0.25), hardest.mean())
    assert float(ohem_cross_entropy(logits, torch.full_like(label, IGNORE_ID), weight, 0.5)) == 0.0


def test_lovasz_softmax_is_one_minus_the_mean_iou_on_hard_predictions_and_descends_to_the_labels() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 4, (2, 12, 16))
    label[0, :3] = IGNORE_ID
    label[1, 5, 5] = 9  # a class of one pixel counts as much as the others
    pred = torch.randint(0, 4, (2, 12, 16))
    probs = F.one_hot(pred, 11).permute(0, 3, 1, 2).float()
    valid = label != IGNORE_ID
    ious = []
    for k in torch.unique(label[valid]).tolist():
        a, b = (label == k) & valid, (pred == k) & valid
        ious.append(float((a & b).sum()) / float((a | b).sum()))
    assert float(lovasz_softmax(probs, label)) == pytest.approx(1.0 - float(np.mean(ious)), abs=1e-6)
    assert float(lovasz_softmax(F.one_hot(label.clamp(max=10), 11).permute(0, 3, 1, 2).float(), label)) == 0.0
    assert float(lovasz_softmax(probs, torch.full_like(label, IGNORE_ID))) == 0.0
    # gradient descent on logits under it alone moves the predictions to the labels, the one-pixel class too
    logits = torch.zeros(2, 11, 12, 16, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=50.0)
    for _ in range(60):
        opt.zero_grad()
        lovasz_softmax(logits.softmax(1), label).backward()
        opt.step()
    assert (logits.argmax(1)[valid] == label[valid]).float().mean() > 0.99
    assert int(logits.argmax(1)[1, 5, 5]) == 9


def test_segmentation_loss_adds_the_lovasz_term_only_when_asked() -> None:
    torch.manual_seed(0)
    out = {"logits": torch.randn(2, 11, 4, 5), "boundary": None}
    label = torch.randint(0, 11, (2, 32, 40))
    train_cfg = {"ohem_keep": None, "boundary_loss_weight": 0.0, "boundary_pos_weight_max": 10.0}
    plain, parts = segmentation_loss(out, label, None, None, train_cfg)
    assert "lovasz" not in parts
    both, parts = segmentation_loss(out, label, None, None, {**train_cfg, "lovasz_weight": 2.0})
    assert parts["lovasz"] > 0 and float(both) == pytest.approx(float(plain) + 2.0 * parts["lovasz"], rel=1e-5)


def test_weight_average_follows_the_decay() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    avg = WeightAverage(net, 0.75)
    before = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net(torch.randn(2, 3, 4, 4))  # train mode: BatchNorm statistics and counter move
    avg.update()
    assert torch.allclose(avg.model[0].weight, 0.75 * before + 0.25 * net[0].weight)
    assert int(avg.model[1].num_batches_tracked) == 1
    assert not any(p.requires_grad for p in avg.model.parameters())


def test_warm_start_weight_average_and_ohem_run(tmp_path: Path) -> None:
    data = _synthetic_camvid(tmp_path / "camvid")
    first = train(_perframe_recipe(tmp_path, data), out_dir=tmp_path / "first", max_iters=2, progress=False)
    recipe = yaml.safe_load(_perframe_recipe(tmp_path, data).read_text())
    # lr 0: the warm-started weights stay exactly the initial checkpoint's (BatchNorm statistics aside)
    recipe["train"].update(init=str(first), ema=0.5, ohem_keep=0.5, lr=0.0, max_iters=3, val_every_iters=3)
    path = tmp_path / "warm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "warm"
    best = train(path, out_dir=out, progress=False)
    start, end = load_checkpoint(first).state_dict, load_checkpoint(best).state_dict
    params = [k for k in start if "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(start[k], end[k]) for k in params)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    for rec in log:  # best.pt candidates: whichever of the average and the trained weights scores higher on val
        avg_miou, trained_miou = rec["val_miou_average"], rec["val_miou_trained_weights"]
        assert rec["val_miou"] == max(avg_miou, trained_miou)
        assert rec["kept"] == ("trained" if trained_miou > avg_miou else "average")
    best_rec = max((r for r in log if r["best"]), key=lambda r: r["step"])
    assert load_checkpoint(best).meta["weights"] == best_rec["kept"]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["ema"] is not None and state["step"] == 3
    # resuming needs the saved average
    train(path, out_dir=out, resume=True, max_iters=4, progress=False)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4


def test_a_detail_head_warm_starts_at_zero_from_a_model_without_one_and_trains(tmp_path: Path) -> None:
    """``model.detail_head`` on top of a ``train.init`` that has none: every shared weight comes from the init,
    the detail classifier starts at zero (the init's own answers), and training moves it."""
    data = _synthetic_camvid(tmp_path / "camvid")
    first = train(_perframe_recipe(tmp_path, data), out_dir=tmp_path / "first", max_iters=2, progress=False)
    recipe = yaml.safe_load(_perframe_recipe(tmp_path, data).read_text())
    recipe["model"]["detail_head"] = True
    recipe["train"].update(init=str(first), max_iters=2, val_every_iters=2)
    frozen = {**recipe, "train": {**recipe["train"], "lr": 0.0}}
    paths = {}
    for name, r in (("frozen", frozen), ("trained", recipe)):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(r))
    start = load_checkpoint(first).state_dict
    frozen_end = load_checkpoint(train(paths["frozen"], out_dir=tmp_path / "frozen", progress=False))
    assert frozen_end.config.detail_head and frozen_end.build_model().stride == 4
    end = frozen_end.state_dict
    params = [k for k in start if "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(start[k], end[k]) for k in params)
    assert not end["detail.weight"].any() and not end["detail.bias"].any()
    trained = load_checkpoint(train(paths["trained"], out_dir=tmp_path / "trained", progress=False)).state_dict
    assert trained["detail.weight"].abs().sum() > 0


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("ema", 1.0, "train.ema"),
        ("ema", True, "train.ema"),
        ("ohem_keep", 0.0, "train.ohem_keep"),
        ("init", "", "train.init"),
        ("lovasz_weight", -1.0, "train.lovasz_weight"),
        ("lovasz_weight", "yes", "train.lovasz_weight"),
    ],
)
def test_new_recipe_fields_are_checked(tmp_path: Path, field: str, value: object, match: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"train": {field: value}}))
    with pytest.raises(TrainConfigError, match=match.replace(".", r"\.")):
        load_recipe(path)


def test_shipped_recipes_parse() -> None:
    from vsseg_ros.training.recipe import load_temporal_recipe

    mar = load_temporal_recipe(REPO / "config" / "train" / "mbv2_lite_mar_camvid.yaml")
    assert mar["model"].temporal["frames"] == 1 and mar["init"] == REPO / "vsseg_ros" / "weights" / "default.pt"
    long = load_recipe(REPO / "config" / "train" / "mbv2_lite_camvid_long.yaml")
    assert long.train["init"] == str(REPO / "vsseg_ros" / "weights" / "default.pt") and long.train["ema"]
    lovasz = load_recipe(REPO / "config" / "train" / "mbv2_lite_camvid_lovasz.yaml")
    assert lovasz.train["lovasz_weight"] == 1.0 and lovasz.train["init"] == long.train["init"]
    detail = load_recipe(REPO / "config" / "train" / "mbv2_lite_camvid_detail.yaml")
    assert detail.model.detail_head and detail.model.replace(detail_head=False) == lovasz.model
    paste = load_recipe(REPO / "config" / "train" / "mbv2_lite_camvid_paste.yaml")
    assert paste.model == detail.model and paste.data["copy_paste"]["p"] == 0.5
    assert paste.train["init"] == str(REPO / "out" / "train" / "mbv2_lite_camvid_detail" / "best.pt")
    both = load_recipe(REPO / "config" / "train" / "mbv2_lite_camvid_detail_paste.yaml")
    assert both.model == paste.model and both.data == paste.data and both.train["init"] == long.train["init"]
    assert both.train["time_budget_min"] == 70 and both.train["seed"] not in (paste.train["seed"], 5, 4)


def test_curves_of_two_runs_are_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the docs' charts are drawn with matplotlib")
    import cv2

    from vsseg_ros.training.curves import main as curves_main

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(
        "\n".join(
            json.dumps({"step": s, "val_miou": 0.6 + s / 1000, "val_miou_trained_weights": 0.6}) for s in (10, 20)
        )
        + "\n"
    )
    b.write_text(json.dumps({"stage": "mar", "step": 5, "val_miou": 0.7}) + "\n")
    out = tmp_path / "c.png"
    assert curves_main(["--run", f"long={a}", "--run", f"mar={b}", "--baseline", "0.7078", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[:2] == (450, 800)
    assert curves_main(["--run", f"x={tmp_path / 'missing.jsonl'}", "--out", str(out)]) == 2

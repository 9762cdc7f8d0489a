"""What `vsseg-ros bench-reference` runs: the ST_Memory reference code beside our TemporalSegNet on the same input.

Given a checkout of github.com/jfzhuang/ST_Memory (``--reference-dir``, NOT part of this repository), this
imports the reference's own classes: its ``SegRefine`` of the MAR stage
(``ST_Memory/exp/cityscapes/psp50/MAR/model/refine.py``: mmsegmentation PSPNet-R50-d8 built by the bundled
mmseg/mmcv from ``mmsegmentation/configs/pspnet_r50-d8.py``, ``lib.net.transformer.STF`` and ``MAR``), gives it
seeded random weights, converts its ``state_dict`` with
:func:`~vsseg_ros.core.models.import_st_memory.st_memory_to_ours` and compares, in fp32 on the same three frames,
the STF output, the MAR output, the logits at 1/8 and the upsampled logits its ``forward`` returns. Then it times
one output frame each way: the reference recomputes the three backbones for every output (its ``forward``), ours
streams (one backbone for the new frame + the fusion over cached features).

What is changed in the reference to run it here (nothing in its model code):

- ``SegRefine.weight_init`` loads trained files from absolute paths on the authors' machines; it is replaced by
  the same random initialisation the reference applies to STF/MAR (xavier on every >1-d tensor), followed by
  seeded random BatchNorm statistics/affines, so the comparison exercises every weight;
- the config path ``/code/mmsegmentation/configs/pspnet_r50-d8.py`` is redirected to the checkout's copy, and its
  ``pretrained`` ImageNet path is dropped (no file to read);
- mmcv 1.3's runner imports torchvision for its model-zoo loader (unused here); when torchvision is not
  installed an empty import-only module stands in for it (reported in the output).

The reference needs ``addict`` and ``yapf`` (mmcv's Config) on ``sys.path``: install them into a scratch
directory (``pip install --target /tmp/ref_deps addict yapf``) and pass ``--extra-path /tmp/ref_deps``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

REFINE_MODULE = "exp.cityscapes.psp50.MAR.model.refine"
CONFIG_FILE = Path("mmsegmentation/configs/pspnet_r50-d8.py")


def _stub_torchvision() -> bool:
    """Put an import-only ``torchvision`` in sys.modules if none is installed; True if it did."""
    if importlib.util.find_spec("torchvision") is not None:
        return False
    tv = types.ModuleType("torchvision")
    tv.__doc__ = "import-only stand-in for mmcv.runner.checkpoint (its torchvision:// loader is not used)"
    models = types.ModuleType("torchvision.models")
    models.__path__ = []  # an empty package: mmcv walks it only when asked for torchvision:// weights
    tv.models = models  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, models
    return True


def import_reference(reference_dir: Path, extra_paths: list[Path]) -> tuple[Any, dict[str, Any]]:
    """The reference's MAR-stage ``refine`` module, importable from the checkout; plus notes on what was done."""
    ref = reference_dir.expanduser().resolve()
    code, mmseg = ref / "ST_Memory", ref / "mmsegmentation"
    refine_file = code / Path(*REFINE_MODULE.split(".")).with_suffix(".py")
    if not refine_file.is_file() or not (mmseg / "mmseg").is_dir() or not (mmseg / "mmcv").is_dir():
        raise FileNotFoundError(
            f"{ref} is not a checkout of jfzhuang/ST_Memory: expected {refine_file} and "
            f"{mmseg}/mmseg, {mmseg}/mmcv (git clone https://github.com/jfzhuang/ST_Memory)"
        )
    for p in [*(str(Path(e).expanduser().resolve()) for e in extra_paths), str(mmseg), str(code)]:
        if p not in sys.path:
            sys.path.insert(0, p)
    missing = [m for m in ("addict", "yapf") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(
            f"the reference's mmcv needs {', '.join(missing)}: install into a scratch "
            f"directory (pip install --target DIR {' '.join(missing)}) and pass --extra-path DIR"
        )
    notes = {"torchvision_stub": _stub_torchvision(), "reference_dir": str(ref)}
    module = importlib.import_module(REFINE_MODULE)
    return module, notes


def build_reference(module: Any, reference_dir: Path, seed: int, mar: bool) -> Any:
    """The reference ``SegRefine`` with seeded random weights (see the module docstring for what is patched)."""
    import torch
    from torch import nn

    config_file = reference_dir.expanduser().resolve() / CONFIG_FILE
    real_config = module.Config

    class _Config:  # only redirects the hard-coded path and drops the pretrained-weights path
        @staticmethod
        def fromfile(path: str) -> Any:
            cfg = real_config.fromfile(str(config_file))
            cfg.model.pretrained = None
            return cfg

    def weight_init(self: Any) -> None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for mod in (self.STF, self.MAR):
                for p in mod.parameters():
                    if p.dim() > 1:
                        nn.init.xavier_uniform_(p, generator=gen)
            for m in self.pspnet.modules():  # BatchNorm: non-trivial statistics and affines
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 0.5 + 0.75)
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)

    torch.manual_seed(seed)  # mmseg's conv initialisation
    module.Config = _Config
    original_init = module.SegRefine.weight_init
    module.SegRefine.weight_init = weight_init
    try:
        net = module.SegRefine(num_classes=19)
    finally:
        module.SegRefine.weight_init = original_init
        module.Config = real_config
    if not mar:
        net.MAR = None
    return net.eval()


def _interleaved_median_ms(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median ms of each function over ``repeats`` calls, the functions called in turn (order reversed every
    other round)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name in list(fns) if i % 2 == 0 else list(reversed(fns)):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    return _interleaved_median_ms({"fn": fn}, repeats)["fn"]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from vsseg_ros.core.models.import_st_memory import config_for_st_memory, st_memory_to_ours
    from vsseg_ros.core.models.temporal import TemporalSegNet

    H, W = args.size
    if H % 128 or W % 128:
        raise ValueError(f"--size {H} {W}: the reference needs multiples of 128 (16x16 blocks at stride 8)")
    if args.threads:
        torch.set_num_threads(args.threads)
    module, notes = import_reference(args.reference_dir, args.extra_path)
    ref = build_reference(module, args.reference_dir, args.seed, mar=not args.no_mar)
    config = config_for_st_memory(mar=not args.no_mar, input_size=(H, W))
    state = {k: v for k, v in ref.state_dict().items() if args.no_mar is False or not k.startswith("MAR.")}
    ours = TemporalSegNet(config)
    ours.load_state_dict(st_memory_to_ours(state, config))
    ours.eval()

    gen = torch.Generator().manual_seed(args.seed + 1)
    frames = [torch.randn(1, 3, H, W, generator=gen) for _ in range(3)]

    seen: dict[str, torch.Tensor] = {}  # the reference's intermediates, from hooks on its own modules
    hooks = [ref.pspnet.decode_head.conv_seg.register_forward_hook(lambda m, i, o: seen.__setitem__("logits8", o))]
    if ref.MAR is not None:
        hooks.append(ref.MAR.register_forward_hook(lambda m, i, o: seen.update(stf=i[0], mar=o)))
    else:
        hooks.append(
            ref.pspnet.decode_head.conv_seg.register_forward_pre_hook(lambda m, i: seen.__setitem__("stf", i[0]))
        )
    mine: dict[str, torch.Tensor] = {}
    if ours.mar is not None:
        ours.mar.register_forward_hook(lambda m, i, o: mine.update(stf=i[0], mar=o))
    with torch.inference_mode():
        if ref.MAR is not None:
            t0 = time.perf_counter()
            ref_out = ref(frames)
            ref_first_ms = (time.perf_counter() - t0) * 1e3
        else:  # the STF-stage forward: PSPNet + STF + cls_seg (the reference's STF-stage SegRefine.forward)
            t0 = time.perf_counter()
            ref_out = _reference_stf_forward(ref, frames)
            ref_first_ms = (time.perf_counter() - t0) * 1e3
        for h in hooks:
            h.remove()
        t0 = time.perf_counter()
        out = ours(torch.stack(frames, 1), target=ours.target_index(3), boundary=False)
        ours_first_ms = (time.perf_counter() - t0) * 1e3
        logits8 = out["logits"]
        up = F.interpolate(logits8, scale_factor=8, mode="bilinear", align_corners=False)
        if ours.mar is None:
            mine["stf"] = out["feature"]

    def diff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        d = (a.float() - b.float()).abs().max().item()
        return {"max_abs_diff": d, "max_abs_value": b.float().abs().max().item()}

    result: dict[str, Any] = {
        "size": [H, W],
        "mar": not args.no_mar,
        "threads": torch.get_num_threads(),
        "notes": notes,
        "diff": {
            "stf_feature": diff(mine["stf"], seen["stf"]),
            "logits_stride8": diff(logits8, seen["logits8"]),
            "logits_upsampled": diff(up, ref_out),
        },
        "argmax_agreement": (up.argmax(1) == ref_out.argmax(1)).float().mean().item(),
    }
    if ours.mar is not None:
        result["diff"]["mar_feature"] = diff(mine["mar"], seen["mar"])

    # -- time per output frame ----------------------------------------------------------------------------
    with torch.inference_mode():
        feats = [ours.frame_features(f) for f in frames]
        ref_fn = (lambda: ref(frames)) if ref.MAR is not None else (lambda: _reference_stf_forward(ref, frames))
        target = ours.target_index(3)

        def ours_stream() -> None:  # a new frame arrives: its backbone, then the fusion over the cached window
            feats.pop(0)
            feats.append(ours.frame_features(frames[2]))
            o = ours.fuse(feats, target, boundary=False)
            F.interpolate(o["logits"], scale_factor=8, mode="bilinear", align_corners=False)

        # alternated (ref, ours, ours, ref, ...) so that a slow spell of the shared machine hits both alike
        medians = _interleaved_median_ms({"ref": ref_fn, "ours": ours_stream}, args.outputs)
        ref_ms, ours_ms = medians["ref"], medians["ours"]
        backbone_ms = _median_ms(lambda: ours.frame_features(frames[2]), args.outputs)
        fuse_ms = _median_ms(lambda: ours.fuse(feats, target, boundary=False, refine=False), args.outputs)
        mar_ms = _median_ms(lambda: ours.mar(feats[target]), args.outputs) if ours.mar is not None else 0.0
    result["time_ms"] = {
        "reference_per_output": ref_ms,
        "reference_first_call": ref_first_ms,
        "ours_streaming_per_output": ours_ms,
        "ours_naive_first_call": ours_first_ms,
        "ours_backbone": backbone_ms,
        "ours_stf": fuse_ms,
        "ours_mar": mar_ms,
        "speedup": ref_ms / ours_ms,
    }
    return result


def _reference_stf_forward(ref: Any, frames: list) -> Any:
    """The STF-stage ``SegRefine.forward`` (that module's file cannot be imported as published: it imports a
    ``Transformer`` name ``lib.net.transformer`` does not define); the MAR-stage module's parts, MAR left out."""
    import torch.nn.functional as F

    feats = [ref.pspnet.decode_head(ref.pspnet.backbone(f), return_feat=True).unsqueeze(2) for f in frames]
    feat = ref.STF(*feats)
    return F.interpolate(ref.pspnet.decode_head.cls_seg(feat), scale_factor=8, mode="bilinear")


__all__ = ["compare", "import_reference", "build_reference"]

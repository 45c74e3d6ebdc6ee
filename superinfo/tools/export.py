"""Export a trained backbone for downstream use: a plain torchvision ResNet state dict, or detectron2's layout.

    from superinfo.tools.export import export_backbone, torchvision_resnet, detection_backbone
    meta = export_backbone("RUN_DIR", "r50.pt")                    # r50.pt + r50.pt.json (how to load it)
    net = torchvision_resnet("resnet50")                           # fc = Identity, ready for the export
    net.load_state_dict(torch.load("r50.pt", weights_only=True))   # strict: no missing or unexpected keys
    backbone = detection_backbone(torch.load("r50.pt"))            # ResNet-50-FPN, frozen BN, for FasterRCNN(...)
    export_backbone("RUN_DIR", "r50.pkl", format="detectron2")     # MODEL.WEIGHTS for detectron2

Formats (``FORMATS``):

``torchvision``: ``torch.save`` of an ordered dict of tensors with torchvision's ResNet names (``conv1.weight``,
``bn1.*``, ``layer1.0.conv1.weight``, ..., ``layer4.*``), BatchNorm ``num_batches_tracked`` included.  It loads
``weights_only=True``.  What happens to ``fc``: the backbone has no classifier, so by default there is none in the
file and the file loads strictly into a torchvision ResNet whose ``fc`` is ``nn.Identity()`` (its output is then
exactly our pooled features).  ``include_probe=True`` adds the run's online linear probe as ``fc.weight`` /
``fc.bias``; it then loads strictly into ``resnet50(num_classes=C)`` (C: the pre-training dataset's classes).

``detectron2``: a pickle ``{"model": {name: numpy array}, "__author__": "superinfo", "matching_heuristics": True}``,
the payload detectron2's ``tools/convert-torchvision-to-d2.py`` writes, keys renamed by ``detectron2_key``:

    torchvision                      detectron2
    conv1.weight                     stem.conv1.weight
    bn1.{weight,bias,running_*}      stem.conv1.norm.{weight,bias,running_*}
    layerL.B.convK.weight            res(L+1).B.convK.weight            (L = 1..4, K = 1..3)
    layerL.B.bnK.*                   res(L+1).B.convK.norm.*
    layerL.B.downsample.0.weight     res(L+1).B.shortcut.weight
    layerL.B.downsample.1.*          res(L+1).B.shortcut.norm.*
    *.num_batches_tracked            dropped (detectron2's FrozenBN has none)
    fc.*                             dropped (detectron2 backbones have no classifier)

Every other key is refused.  The mapping is a bijection on the rest (``torchvision_key`` inverts it).

Constraints: only ``resnet18`` / ``resnet50`` at width 64 export (torchvision and detectron2 fix the stage widths at
64..512).  A CIFAR-stem backbone (3x3 stride-1 conv1, no max-pool) exports to ``torchvision`` with the stem
recorded in the metadata (``torchvision_resnet(arch, cifar_stem=True)`` builds the matching model); the detectron2
export and the detection backbone refuse it: their stems are fixed 7x7 stride-2 convolutions with max-pool, and
detectron2 would silently skip a mis-shaped ``conv1`` and train from a random stem.

Each export writes ``OUT.json`` next to ``OUT``: arch, stem, input normalisation (the run's, which the detector
must use instead of ImageNet's), the source checkpoint and the settings a detector needs.
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.resnet import BasicBlock, Bottleneck

from mi_toolkit.atomic import write_atomically, write_json_atomically
from mi_toolkit.errors import ArgumentError
from .. import data
from ..trainer.evaluate import model_from_checkpoint
from ..trainer.run import CHECKPOINT, load_checkpoint

__all__ = ["EXPORT_ARCHS", "FORMATS", "backbone_info", "detection_backbone", "detectron2_key",
           "detectron2_state_dict", "export_backbone", "load_detection_backbone", "torchvision_key",
           "torchvision_resnet", "torchvision_state_dict"]

FORMATS = ("torchvision", "detectron2")
EXPORT_WIDTH = 64
# arch -> (block, blocks per stage): how an exportable backbone is recognised
EXPORT_ARCHS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
_DROPPED_IN_DETECTRON2 = re.compile(r"(^fc\.|\.num_batches_tracked$|^num_batches_tracked$)")


# ---------------------------------------------------------------------------------------------------------------
# What a backbone is
# ---------------------------------------------------------------------------------------------------------------

def _backbone_of(model: nn.Module) -> nn.Module:
    return model.backbone if hasattr(model, "backbone") and hasattr(model, "head") else model


def backbone_info(model: nn.Module) -> dict:
    """``{"arch", "width", "cifar_stem", "feature_dim"}`` of a ``superinfo.trainer.models.ResNet`` (or a SuperInfoModel).
    Raises ValueError for backbones no ResNet layout describes (``tiny``)."""
    backbone = _backbone_of(model)
    stages = [getattr(backbone, f"layer{i}", None) for i in range(1, 5)]
    conv1 = getattr(backbone, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not all(isinstance(s, nn.Sequential) and len(s) for s in stages):
        raise ArgumentError(f"model must be a ResNet backbone (arch resnet18 or resnet50), got "
                         f"{type(backbone).__name__}; the 'tiny' test arch has no torchvision counterpart")
    block = type(stages[0][0])
    counts = tuple(len(s) for s in stages)
    arch = next((name for name, (b, n) in EXPORT_ARCHS.items() if b is block and n == counts), None)
    if arch is None:
        raise ArgumentError(f"unsupported ResNet: {block.__name__} blocks {counts}; exportable: "
                         + ", ".join(f"{n} ({b.__name__} {c})" for n, (b, c) in EXPORT_ARCHS.items()))
    cifar_stem = conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    return {"arch": arch, "width": int(conv1.out_channels), "cifar_stem": bool(cifar_stem),
            "feature_dim": int(getattr(backbone, "feature_dim", 8 * conv1.out_channels * block.expansion))}


def _check_exportable(info: dict) -> None:
    if info["width"] != EXPORT_WIDTH:
        raise ArgumentError(f"width must be {EXPORT_WIDTH} to export (torchvision and detectron2 fix the ResNet stage "
                         f"widths at 64..512), this backbone has width {info['width']}")


# ---------------------------------------------------------------------------------------------------------------
# torchvision layout
# ---------------------------------------------------------------------------------------------------------------

def torchvision_resnet(arch: str, *, cifar_stem: bool = False, num_classes: int | None = None,
                       norm_layer=None) -> nn.Module:
    """torchvision's ``resnet18`` / ``resnet50`` (random init) shaped to receive an export strictly: ``fc`` is
    ``nn.Identity()`` unless ``num_classes`` is given (an export with ``include_probe``); ``cifar_stem`` replaces
    ``conv1`` by a 3x3 stride-1 convolution and ``maxpool`` by ``nn.Identity()``."""
    if arch not in EXPORT_ARCHS:
        raise ArgumentError(f"arch must be one of {', '.join(EXPORT_ARCHS)}, got {arch!r}")
    kw = {} if norm_layer is None else {"norm_layer": norm_layer}
    net = getattr(tv_resnet, arch)(weights=None, num_classes=num_classes or 1000, **kw)
    if num_classes is None:
        net.fc = nn.Identity()
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, EXPORT_WIDTH, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    return net


def torchvision_state_dict(model: nn.Module, *, probe: dict | None = None) -> "OrderedDict[str, torch.Tensor]":
    """The backbone's weights under torchvision's ResNet names (CPU copies).  ``probe``: a linear layer's state dict
    (``weight`` [C, feature_dim], ``bias`` [C]) to include as ``fc``; without it the dict has no ``fc``."""
    backbone = _backbone_of(model)
    info = backbone_info(backbone)
    _check_exportable(info)
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in backbone.state_dict().items())
    with torch.device("meta"):      # torchvision's own key list, without allocating or initialising weights
        expected = set(torchvision_resnet(info["arch"]).state_dict())
    if set(state) != expected:
        raise ArgumentError(f"backbone keys differ from torchvision's {info['arch']}: missing "
                         f"{sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}")
    if probe is not None:
        weight, bias = probe.get("weight"), probe.get("bias")
        if weight is None or bias is None or weight.ndim != 2 or weight.shape[1] != info["feature_dim"] \
                or bias.shape != weight.shape[:1]:
            shapes = {k: tuple(v.shape) for k, v in probe.items()}
            raise ArgumentError(f"probe must be a linear layer from {info['feature_dim']} features (weight [C, "
                             f"{info['feature_dim']}], bias [C]), got {shapes}")
        state["fc.weight"], state["fc.bias"] = weight.detach().cpu().clone(), bias.detach().cpu().clone()
    return state


# ---------------------------------------------------------------------------------------------------------------
# detectron2 layout
# ---------------------------------------------------------------------------------------------------------------

# One table, read both ways: (torchvision key, detectron2 key); {stage} counts torchvision's layer1..4 on the left
# and detectron2's res2..5 on the right.
_KEY_TABLE = (
    ("conv1.weight", "stem.conv1.weight"),
    ("bn1.{field}", "stem.conv1.norm.{field}"),
    ("layer{stage}.{block}.conv{i}.weight", "res{stage}.{block}.conv{i}.weight"),
    ("layer{stage}.{block}.bn{i}.{field}", "res{stage}.{block}.conv{i}.norm.{field}"),
    ("layer{stage}.{block}.downsample.0.weight", "res{stage}.{block}.shortcut.weight"),
    ("layer{stage}.{block}.downsample.1.{field}", "res{stage}.{block}.shortcut.norm.{field}"),
)
_STAGES = {"torchvision": "[1-4]", "detectron2": "[2-5]"}


def _key_pattern(template: str, side: str) -> re.Pattern:
    groups = {"stage": f"(?P<stage>{_STAGES[side]})", "block": r"(?P<block>\d+)", "i": "(?P<i>[1-3])",
              "field": f"(?P<field>{'|'.join(_BN_FIELDS)})"}
    parts = re.split(r"\{(\w+)\}", template)      # literal, name, literal, name, ...
    return re.compile("".join(groups[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)) + "$")


_KEY_PATTERNS = {side: [_key_pattern(row[column], side) for row in _KEY_TABLE]
                 for column, side in enumerate(("torchvision", "detectron2"))}


def _translate(key: str, source: str, target: str) -> str | None:
    shift = 1 if source == "torchvision" else -1
    for pattern, row in zip(_KEY_PATTERNS[source], _KEY_TABLE):
        match = pattern.match(key)
        if match:
            values = match.groupdict()
            if "stage" in values:
                values["stage"] = int(values["stage"]) + shift
            return row[("torchvision", "detectron2").index(target)].format(**values)
    return None


def detectron2_key(key: str) -> str:
    """torchvision ResNet key -> detectron2 key (the table in the module docstring).  ValueError for keys the
    detectron2 export drops (``fc.*``, ``num_batches_tracked``) or that are not ResNet backbone keys."""
    found = _translate(key, "torchvision", "detectron2")
    if found is None:
        raise ArgumentError(f"key {key!r} has no detectron2 counterpart (only ResNet backbone keys map; fc.* and "
                            f"num_batches_tracked are dropped by detectron2_state_dict)")
    return found


def torchvision_key(key: str) -> str:
    """detectron2 ResNet key -> torchvision key: the inverse of ``detectron2_key``."""
    found = _translate(key, "detectron2", "torchvision")
    if found is None:
        raise ArgumentError(f"key {key!r} is not a detectron2 ResNet backbone key (stem.conv1.*, res2..res5.*)")
    return found


def detectron2_state_dict(state: dict) -> "OrderedDict[str, object]":
    """A torchvision-layout ResNet state dict -> detectron2's names with numpy values (what
    convert-torchvision-to-d2.py writes).  Drops ``fc.*`` and ``num_batches_tracked``; refuses a CIFAR stem."""
    conv1 = state.get("conv1.weight")
    if conv1 is None:
        raise ArgumentError("state must be a torchvision ResNet state dict (it has no 'conv1.weight')")
    if tuple(conv1.shape[-2:]) != (7, 7):
        raise ArgumentError(f"detectron2's ResNet stem is a 7x7 stride-2 convolution with max-pool; this backbone has a "
                         f"{tuple(conv1.shape[-2:])} conv1 (the CIFAR stem), which detectron2 would skip and leave "
                         f"random. Export it with format='torchvision' instead, or train with --cifar-stem false")
    out = OrderedDict()
    for key, value in state.items():
        if _DROPPED_IN_DETECTRON2.search(key):
            continue
        out[detectron2_key(key)] = value.detach().cpu().numpy()
    return out


def detectron2_config(info: dict, mean, std) -> dict:
    """The detectron2 config values this backbone needs (torchvision's Bottleneck strides in the 3x3 conv, our
    inputs are RGB normalised with the run's statistics)."""
    config = {"MODEL.RESNETS.DEPTH": 50 if info["arch"] == "resnet50" else 18,
              "MODEL.RESNETS.STRIDE_IN_1X1": False, "MODEL.RESNETS.NORM": "FrozenBN", "INPUT.FORMAT": "RGB",
              "MODEL.PIXEL_MEAN": [round(255 * m, 4) for m in mean],
              "MODEL.PIXEL_STD": [round(255 * s, 4) for s in std]}
    if info["arch"] == "resnet18":
        config["MODEL.RESNETS.RES2_OUT_CHANNELS"] = 64      # detectron2 requires it for R18/R34
    return config


# ---------------------------------------------------------------------------------------------------------------
# torchvision detection
# ---------------------------------------------------------------------------------------------------------------

def _detection_body(model: nn.Module) -> nn.Module:
    """The ResNet trunk of a torchvision detector: ``model.backbone.body`` (FasterRCNN / MaskRCNN),
    ``model.body`` (BackboneWithFPN) or the IntermediateLayerGetter itself."""
    for path in (("backbone", "body"), ("body",), ()):
        module = model
        for name in path:
            module = getattr(module, name, None)
        if module is not None and hasattr(module, "layer4") and hasattr(module, "conv1"):
            return module
    raise ArgumentError(f"model must be a torchvision ResNet-FPN detector (FasterRCNN, MaskRCNN), a BackboneWithFPN "
                     f"or its body, got {type(model).__name__}")


def load_detection_backbone(model: nn.Module, state: dict):
    """Load a torchvision-layout export into a detector's ResNet trunk with ``strict=True``; returns
    ``load_state_dict``'s result (no missing, no unexpected keys).  An ``fc`` (``include_probe``) is left out: the
    trunk ends at layer4.  FrozenBatchNorm2d drops ``num_batches_tracked`` itself."""
    body = _detection_body(model)
    conv1 = state.get("conv1.weight")
    if conv1 is None:
        raise ArgumentError("state must be a torchvision ResNet state dict (it has no 'conv1.weight')")
    if tuple(conv1.shape) != tuple(body.conv1.weight.shape):
        raise ArgumentError(f"the detector's stem conv1 is {tuple(body.conv1.weight.shape)}, the export's "
                         f"{tuple(conv1.shape)}: torchvision detectors use the ImageNet stem (7x7, width 64), so a "
                         f"CIFAR-stem backbone cannot be used there")
    trunk = OrderedDict((k, v) for k, v in state.items() if not k.startswith("fc."))
    return body.load_state_dict(trunk, strict=True)


def detection_backbone(state: dict, *, trainable_layers: int = 3, arch: str | None = None):
    """A torchvision ``BackboneWithFPN`` (FrozenBatchNorm2d, as torchvision's pretrained detectors use) holding the
    export: ``FasterRCNN(detection_backbone(sd), num_classes=...)`` / ``MaskRCNN(...)``.  ``trainable_layers``:
    how many stages from layer4 down train (torchvision's default 3).  ``arch``: read from the state by default
    (bottleneck blocks have a conv3: resnet50; basic blocks: resnet18)."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    if arch is None:
        arch = "resnet50" if "layer1.0.conv3.weight" in state else "resnet18"

    backbone = resnet_fpn_backbone(backbone_name=arch, weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=trainable_layers)
    load_detection_backbone(backbone, state)
    return backbone


# ---------------------------------------------------------------------------------------------------------------
# Export from a run
# ---------------------------------------------------------------------------------------------------------------

def _read_checkpoint(source) -> tuple[Path, dict]:
    path = Path(source)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ArgumentError(f"source must be a run folder holding {CHECKPOINT} or a checkpoint file; {path} does "
                         f"not exist")
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ArgumentError(f"{path} is not a superinfo checkpoint (it needs 'model' and 'config' entries)")
    return path, state


def _normalisation(cfg) -> tuple[list, list]:
    if cfg.dataset in data.PRESETS:
        preset = data.preset_for(cfg.dataset, cfg.image_size)
        return list(preset.mean), list(preset.std)
    return [None] * 3, [None] * 3       # a run trained on in-memory data: its normalisation is not recorded


def export_backbone(source, out, format: str = "torchvision", *, include_probe: bool = False) -> dict:
    """Export the backbone of a run (folder or checkpoint file) to ``out`` in ``format`` (``FORMATS``); writes
    ``out`` and ``out.json`` (the metadata, also returned)."""
    if format not in FORMATS:
        raise ArgumentError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if include_probe and format != "torchvision":
        raise ArgumentError("include_probe works with format='torchvision' only (detectron2 backbones have no fc)")
    path, checkpoint = _read_checkpoint(source)
    cfg, model = model_from_checkpoint(checkpoint)
    info = backbone_info(model)
    probe = checkpoint.get("probe") if include_probe else None
    if include_probe and probe is None:
        raise ArgumentError(f"{path} has no online linear probe (the run was trained with --no-probe); export "
                         f"without include_probe (--with-probe)")
    state = torchvision_state_dict(model, probe=probe)
    mean, std = _normalisation(cfg)
    meta = {"format": format, "source": str(path), "checkpoint_epoch": int(checkpoint.get("epoch", -1)),
            **info, "pretrain_dataset": cfg.dataset, "image_size": cfg.image_size,
            "input": {"range": "RGB in [0, 1], then (x - mean) / std", "mean": mean, "std": std}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "torchvision":
        classes = None if probe is None else int(state["fc.weight"].shape[0])
        meta["fc"] = ("none: build the model with fc = nn.Identity() (torchvision_resnet does)" if probe is None
                      else f"the run's online linear probe ({classes} classes): resnet(num_classes={classes})")
        meta["load"] = (f"net = superinfo.tools.export.torchvision_resnet({info['arch']!r}, cifar_stem="
                        f"{info['cifar_stem']}, num_classes={classes}); net.load_state_dict(torch.load(path, "
                        f"weights_only=True))")
        if info["cifar_stem"]:
            meta["torchvision_patches"] = ["conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)", "maxpool = nn.Identity()"]
            meta["detection"] = "not usable: torchvision and detectron2 detectors need the 7x7 ImageNet stem"
        else:
            meta["detection"] = {"torchvision": "superinfo.tools.export.detection_backbone(state) -> BackboneWithFPN; "
                                                "FasterRCNN(backbone, num_classes, image_mean=mean, image_std=std)",
                                 "image_mean": mean, "image_std": std}
        write_atomically(out, lambda f: torch.save(state, f))
        meta["num_keys"] = len(state)
    else:
        payload = {"model": detectron2_state_dict(state), "__author__": "superinfo", "matching_heuristics": True}
        if None not in mean:
            meta["detectron2_config"] = detectron2_config(info, mean, std)
        meta["load"] = "detectron2: cfg.MODEL.WEIGHTS = path, plus the detectron2_config values"
        meta["num_keys"] = len(payload["model"])
        write_atomically(out, lambda f: pickle.dump(payload, f))
    meta_path = out.with_name(out.name + ".json")
    write_json_atomically(meta_path, meta)
    return meta



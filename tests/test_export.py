"""Backbone export: strict reloads into torchvision's ResNets and detection trunks, identical features, the
detectron2 key mapping, and refusals with clear errors."""
import json
import pickle

import pytest
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN, fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn
from torchvision.ops import FrozenBatchNorm2d

from fixtures_transfer import make_run
from superinfo.cli import main
from superinfo.trainer.evaluate import load_run
from superinfo.tools.export import (backbone_info, detection_backbone, detectron2_key, detectron2_state_dict,
                              export_backbone, load_detection_backbone, torchvision_key, torchvision_resnet,
                              torchvision_state_dict)
from superinfo.trainer.models import build_backbone, build_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trained-for-one-step ResNet-18 runs at width 64: ImageNet stem and CIFAR stem."""
    root = tmp_path_factory.mktemp("export_runs")
    return {"imagenet_stem": make_run(root / "r18", width=64, cifar_stem=False, image_size=32),
            "cifar_stem": make_run(root / "r18_cifar", width=64, cifar_stem=True, image_size=16)}


def _randomise_bn(module, seed=0):
    # fresh BatchNorm stats are 0/1: random ones make a wrong mapping of running stats visible
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return module


@pytest.fixture(scope="module")
def resnet50():
    return _randomise_bn(build_backbone("resnet50", cifar_stem=False)).eval()


# --- torchvision layout ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["imagenet_stem", "cifar_stem"])
def test_torchvision_export_reloads_strictly_with_identical_features(runs, stem, tmp_path):
    out = tmp_path / "backbone.pt"
    meta = export_backbone(runs[stem], out)
    state = torch.load(out, weights_only=True)       # a plain dict of tensors
    assert "fc.weight" not in state and meta["num_keys"] == len(state)
    assert int(state["bn1.num_batches_tracked"]) == 1        # the trained statistics, not a fresh model's
    net = torchvision_resnet("resnet18", cifar_stem=meta["cifar_stem"]).eval()
    result = net.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []

    _, model, _ = load_run(runs[stem])
    model.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model.encode(x), net(x)
    assert ours.shape == (4, 512)
    assert torch.equal(ours, theirs)      # same weights, same ops in the same order: bit-identical on CPU

    saved = json.loads((tmp_path / "backbone.pt.json").read_text())
    assert saved["cifar_stem"] is (stem == "cifar_stem") and saved["arch"] == "resnet18"
    assert saved["input"]["mean"] == pytest.approx([0.3047] * 3)      # the digits preset the run names
    if stem == "cifar_stem":
        assert "maxpool = nn.Identity()" in saved["torchvision_patches"]
        with pytest.raises(RuntimeError, match="size mismatch for conv1.weight"):
            torchvision_resnet("resnet18").load_state_dict(state)    # the stem patch is needed
    else:
        assert saved["detection"]["image_mean"] == saved["input"]["mean"]


def test_export_with_probe_loads_as_a_classifier(runs, tmp_path):
    out = tmp_path / "classifier.pt"
    export_backbone(runs["imagenet_stem"], out, include_probe=True)
    state = torch.load(out, weights_only=True)
    assert state["fc.weight"].shape == (3, 512) and state["fc.bias"].shape == (3,)
    net = torchvision_resnet("resnet18", num_classes=3).eval()
    assert net.load_state_dict(state, strict=True).missing_keys == []
    checkpoint = torch.load(runs["imagenet_stem"] / "checkpoint.pt", weights_only=False)
    _, model, _ = load_run(runs["imagenet_stem"])
    probe = torch.nn.Linear(512, 3)
    probe.load_state_dict(checkpoint["probe"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), probe(model.eval().encode(x)))


def test_resnet50_strict_reload_and_identical_features(resnet50):
    state = torchvision_state_dict(resnet50)
    assert len(state) == 318 and backbone_info(resnet50) == {"arch": "resnet50", "width": 64, "cifar_stem": False,
                                                             "feature_dim": 2048}
    net = torchvision_resnet("resnet50").eval()
    result = net.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(resnet50(x), net(x))
    # the export is a copy: training the source afterwards does not change it
    with torch.no_grad():
        resnet50.conv1.weight.add_(1.0)
    assert not torch.equal(state["conv1.weight"], resnet50.conv1.weight)
    resnet50.conv1.weight.data.sub_(1.0)


# --- torchvision detection ---------------------------------------------------------------------------------------

def _detector_check(detector, state, resnet50, frozen: bool):
    result = load_detection_backbone(detector, state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    body = detector.backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d) is frozen
    assert torch.equal(body.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    detector.eval()
    with torch.no_grad():
        trunk = body(x)["3"]
        stem = resnet50.maxpool(resnet50.relu(resnet50.bn1(resnet50.conv1(x))))
        ours = resnet50.layer4(resnet50.layer3(resnet50.layer2(resnet50.layer1(stem))))
        if frozen:
            # FrozenBatchNorm2d computes x * scale + shift, not F.batch_norm: float rounding compounds over 50
            # layers (measured: 1e-6 of the largest activation); a wrong weight would differ at order 1
            assert float((trunk - ours).abs().max()) <= 1e-5 * float(ours.abs().max())
        else:
            assert torch.equal(trunk, ours)
        out = detector([torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(4))])
    assert set(out[0]) >= {"boxes", "labels", "scores"} and out[0]["boxes"].shape[1] == 4
    return out[0]


@pytest.mark.parametrize("build", [fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn])
def test_export_loads_into_torchvision_detectors(resnet50, build):
    state = torchvision_state_dict(resnet50)
    detector = build(weights=None, weights_backbone=None, min_size=64, max_size=80, box_detections_per_img=3)
    out = _detector_check(detector, state, resnet50, frozen=False)   # no weights: torchvision builds BatchNorm2d
    if build is maskrcnn_resnet50_fpn:
        assert out["masks"].shape[1:] == (1, 64, 80)


def test_frozen_bn_detection_backbone_for_faster_and_mask_rcnn(resnet50):
    state = torchvision_state_dict(resnet50)
    assert "bn1.num_batches_tracked" in state       # FrozenBatchNorm2d drops it itself: still strict
    for cls in (FasterRCNN, MaskRCNN):
        detector = cls(detection_backbone(state), num_classes=5, min_size=64, max_size=80,
                       box_detections_per_img=3)
        assert not detector.backbone.body.layer1[0].conv1.weight.requires_grad       # trainable_layers=3
        _detector_check(detector, state, resnet50, frozen=True)


def test_detection_backbone_reads_the_arch_from_the_state(runs, tmp_path):
    export_backbone(runs["imagenet_stem"], tmp_path / "r18.pt")     # a ResNet-18: basic blocks, no conv3
    state = torch.load(tmp_path / "r18.pt", weights_only=True)
    body = detection_backbone(state).body
    assert not hasattr(body.layer1[0], "conv3")
    assert torch.equal(body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_detection_refuses_cifar_stem_and_wrong_models(runs, tmp_path):
    export_backbone(runs["cifar_stem"], tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    with pytest.raises(ValueError, match="CIFAR-stem backbone cannot be used"):
        detection_backbone(state, arch="resnet18")
    with pytest.raises(ValueError, match="must be a torchvision ResNet-FPN detector"):
        load_detection_backbone(torch.nn.Linear(2, 2), state)


# --- detectron2 layout -------------------------------------------------------------------------------------------

def _convert_torchvision_to_d2(keys):
    """detectron2's tools/convert-torchvision-to-d2.py renaming loop, verbatim: the independent oracle."""
    out = {}
    for k in keys:
        old_k = k
        if "layer" not in k:
            k = "stem." + k
        for t in [1, 2, 3, 4]:
            k = k.replace("layer{}".format(t), "res{}".format(t + 1))
        for t in [1, 2, 3]:
            k = k.replace("bn{}".format(t), "conv{}.norm".format(t))
        k = k.replace("downsample.0", "shortcut")
        k = k.replace("downsample.1", "shortcut.norm")
        out[old_k] = k
    return out


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_detectron2_mapping_is_the_official_bijection(arch):
    state = torchvision_state_dict(_randomise_bn(build_backbone(arch, cifar_stem=False)))
    kept = [k for k in state if not k.endswith("num_batches_tracked")]
    assert len(kept) == {"resnet18": 100, "resnet50": 265}[arch]
    oracle = _convert_torchvision_to_d2(kept)
    mapped = {k: detectron2_key(k) for k in kept}
    assert mapped == oracle                                         # every key, as detectron2's own script
    assert len(set(mapped.values())) == len(kept)                   # injective
    assert all(torchvision_key(v) == k for k, v in mapped.items())  # and inverted by torchvision_key
    d2 = detectron2_state_dict(state)
    assert list(d2) == [mapped[k] for k in kept]
    for k in kept:
        assert d2[mapped[k]].shape == tuple(state[k].shape)
        assert (d2[mapped[k]] == state[k].numpy()).all()
    assert {k.split(".")[0] for k in d2} == {"stem", "res2", "res3", "res4", "res5"}
    assert mapped["layer2.0.downsample.1.running_var"] == "res3.0.shortcut.norm.running_var"


def test_detectron2_key_refusals():
    for bad in ("fc.weight", "bn1.num_batches_tracked", "layer5.0.conv1.weight", "layer1.0.bn4.weight",
                "head.mlp.0.weight"):
        with pytest.raises(ValueError, match="no detectron2 counterpart"):
            detectron2_key(bad)
    with pytest.raises(ValueError, match="not a detectron2 ResNet backbone key"):
        torchvision_key("roi_heads.box_predictor.cls_score.weight")


def test_detectron2_export_payload(runs, tmp_path):
    out = tmp_path / "r18.pkl"
    meta = export_backbone(runs["imagenet_stem"], out, format="detectron2")
    with open(out, "rb") as f:
        payload = pickle.load(f, encoding="latin1")       # as detectron2's checkpointer reads it
    assert set(payload) == {"model", "__author__", "matching_heuristics"} and payload["matching_heuristics"] is True
    export_backbone(runs["imagenet_stem"], tmp_path / "r18.pt")
    state = torch.load(tmp_path / "r18.pt", weights_only=True)
    assert len(payload["model"]) == meta["num_keys"] == 100
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert (payload["model"][detectron2_key(key)] == value.numpy()).all()
    config = meta["detectron2_config"]
    assert config["MODEL.RESNETS.STRIDE_IN_1X1"] is False and config["MODEL.RESNETS.DEPTH"] == 18
    assert config["MODEL.PIXEL_MEAN"] == pytest.approx([255 * 0.3047] * 3, abs=1e-3)


# --- refusals ----------------------------------------------------------------------------------------------------

def test_export_refusals(runs, tmp_path):
    with pytest.raises(ValueError, match="7x7 stride-2.*CIFAR stem"):
        export_backbone(runs["cifar_stem"], tmp_path / "x.pkl", format="detectron2")
    with pytest.raises(ValueError, match="format must be one of torchvision, detectron2"):
        export_backbone(runs["imagenet_stem"], tmp_path / "x", format="onnx")
    with pytest.raises(ValueError, match="include_probe works with format='torchvision' only"):
        export_backbone(runs["imagenet_stem"], tmp_path / "x", format="detectron2", include_probe=True)
    with pytest.raises(ValueError, match="does not exist"):
        export_backbone(tmp_path / "no_run", tmp_path / "x.pt")
    with pytest.raises(ValueError, match="'tiny' test arch"):
        torchvision_state_dict(build_model("tiny", width=4))
    with pytest.raises(ValueError, match="width must be 64 to export.*width 8"):
        torchvision_state_dict(build_backbone("resnet18", width=8))
    with pytest.raises(ValueError, match="probe must be a linear layer from 512"):
        torchvision_state_dict(build_backbone("resnet18"), probe={"weight": torch.zeros(3, 10),
                                                                   "bias": torch.zeros(3)})
    assert not (tmp_path / "x.pkl").exists()


def test_cli_export(runs, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", "--run", str(runs["imagenet_stem"]), "--format", "torchvision", "--out", str(out)]) == 0
    assert "exported resnet18 (ImageNet stem" in capsys.readouterr().out
    net = torchvision_resnet("resnet18")
    assert net.load_state_dict(torch.load(out, weights_only=True)).missing_keys == []
    assert main(["export", "--run", str(runs["imagenet_stem"] / "checkpoint.pt"), "--format", "detectron2",
                 "--out", str(tmp_path / "cli.pkl")]) == 0
    assert main(["export", "--run", str(runs["cifar_stem"]), "--format", "detectron2", "--out",
                 str(tmp_path / "c.pkl")]) == 2
    assert "superinfo export: error:" in capsys.readouterr().err

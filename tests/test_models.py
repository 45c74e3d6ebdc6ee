"""Encoders, LARS and the warm-up + cosine schedule of the SuperInfo trainer."""
import math

import pytest
import torch
import torchvision

from superinfo.trainer.models import build_backbone, build_model
from superinfo.objective import GaussianPosterior
from superinfo.trainer.optim import LARS, WarmupCosine, build_optimizer, param_groups


@pytest.mark.parametrize("arch,width", [("tiny", 4), ("resnet18", 4)])
def test_model_forward_shapes(arch, width):
    model = build_model(arch, width=width, z_dim=16)
    h, post = model(torch.randn(4, 3, 8, 8))
    assert h.shape == (4, model.feature_dim)
    assert isinstance(post, GaussianPosterior) and post.mean.shape == post.logvar.shape == (4, 16)
    assert post.mean.dtype == torch.float32
    assert model.encode(torch.randn(2, 3, 8, 8)).shape == (2, model.feature_dim)


def test_resnet18_cifar_stem_matches_torchvision_layout():
    ours = build_backbone("resnet18", cifar_stem=True)
    assert ours.feature_dim == 512 and ours.conv1.kernel_size == (3, 3) and ours.conv1.stride == (1, 1)
    tv = torchvision.models.resnet18()
    tv_shapes = {k: v.shape for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert set(ours_shapes) == set(tv_shapes)
    assert all(ours_shapes[k] == tv_shapes[k] for k in ours_shapes if k != "conv1.weight")


def test_resnet50_builds_and_loads_into_torchvision():
    ours = build_backbone("resnet50", cifar_stem=False)
    assert ours.feature_dim == 2048
    missing, unexpected = torchvision.models.resnet50().load_state_dict(ours.state_dict(), strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
    ours.eval()
    with torch.no_grad():
        assert ours(torch.randn(1, 3, 32, 32)).shape == (1, 2048)


def test_channels_last_forward_matches():
    model = build_model("tiny", width=4).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = model.encode(x)
        cl = model.to(memory_format=torch.channels_last).encode(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch"):
        build_backbone("vgg")


def test_param_groups_exclude_bias_and_norm():
    model = build_model("tiny", width=4)
    decay, no_decay = param_groups([model], weight_decay=0.1)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"]
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_lars_step_matches_formula():
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5))
    w.grad, b.grad = torch.randn(5, 3), torch.randn(5)
    w0, b0, gw, gb = w.detach().clone(), b.detach().clone(), w.grad.clone(), b.grad.clone()
    lr, wd, eta = 0.5, 1e-2, 1e-3
    opt = LARS([{"params": [w], "weight_decay": wd, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=lr, eta=eta)
    opt.step()
    g = gw + wd * w0
    trust = eta * w0.norm() / g.norm()
    torch.testing.assert_close(w.detach(), w0 - lr * trust * g)
    torch.testing.assert_close(b.detach(), b0 - lr * gb)           # excluded: plain SGD, no decay
    # second step uses momentum
    w.grad, b.grad = gw.clone(), gb.clone()
    opt.step()
    torch.testing.assert_close(b.detach(), b0 - lr * gb - lr * (0.9 * gb + gb))


def test_build_optimizer_names():
    model = build_model("tiny", width=4)
    assert isinstance(build_optimizer("lars", [model], 0.1, 1e-6), LARS)
    assert isinstance(build_optimizer("adam", [model], 0.1, 1e-6), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("rmsprop", [model], 0.1, 0.0)


def test_warmup_cosine_schedule_and_state():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = WarmupCosine(opt, total_steps=10, warmup_steps=2)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1.0) and lrs[1] == pytest.approx(2.0)       # warm-up
    assert lrs[2] == pytest.approx(2.0)                                         # cosine starts at the peak
    assert lrs[6] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    opt2 = torch.optim.SGD([p], lr=2.0)
    sched2 = WarmupCosine(opt2, total_steps=10, warmup_steps=2)
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]

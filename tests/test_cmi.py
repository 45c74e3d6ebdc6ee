"""Conditional MI (KSG-CMI, Frenzel-Pompe) against ConditionalGaussian's closed form; the device= argument."""
import json
import math

import numpy as np
import pytest
import torch

import mi_toolkit
from mi_toolkit.conditional import ksg_cmi
from synthetic import ConditionalGaussian


def same(a, b):
    """Two results hold the same figures (NaN equal to NaN)."""
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def sample(dims, cmi, n=5000, seed=0):
    task = ConditionalGaussian(*dims, cmi=cmi, seed=sum(dims))
    x, y, z = task.sample(n, torch.Generator().manual_seed(seed))
    return task, x, y, z


# where KSG-CMI can do it at 5000 rows (benchmarks/results/cmi_vs_ennemi.json has every case, misses included)
@pytest.mark.parametrize("dims, cmi", [((1, 1, 1), 0.5), ((1, 1, 3), 0.5), ((1, 1, 1), 1.0),
                                       ((1, 1, 2), 0.0), ((2, 1, 1), 0.5)])
def test_ksg_cmi_matches_the_closed_form(dims, cmi):
    task, x, y, z = sample(dims, cmi)
    result = mi_toolkit.estimate_cmi(x, y, z, subsamples=3)
    truth = task.cmi_closed_form
    assert isinstance(result, mi_toolkit.MIResult)
    assert result.estimator == "ksg-cmi" and result.direction == "estimate" and not result.failed
    assert math.isfinite(result.stderr) and result.stderr > 0
    assert abs(result.mi - truth) <= max(0.15, 0.15 * truth), (result.mi, truth)


def test_cmi_separates_conditional_from_plain_dependence():
    task = ConditionalGaussian(1, 1, 1, cmi=0.0, z_strength=2.0, seed=2)
    x, y, z = task.sample(3000, torch.Generator().manual_seed(0))
    assert task.mi_xy > 0.3
    plain = mi_toolkit.estimate(x, y, "ksg", subsamples=2)
    cond = mi_toolkit.estimate(x, y, "ksg", z=z, subsamples=2)
    assert plain.mi > 0.2 and abs(cond.mi) < 0.05


def test_estimate_with_z_is_estimate_cmi():
    _, x, y, z = sample((1, 2, 1), 0.5, n=1000)
    a = mi_toolkit.estimate(x, y, "ksg", z=z, subsamples=3, k=4)
    b = mi_toolkit.estimate_cmi(x, y, z, "ksg", subsamples=3, k=4)
    assert same(a, b)


def test_exhaustive_search_gives_the_tree_counts():
    _, x, y, z = sample((2, 2, 3), 0.5, n=600)
    x, y, z = (t.double().numpy() for t in (x, y, z))
    assert ksg_cmi(x, y, z, exhaustive=True) == ksg_cmi(x, y, z, exhaustive=False)
    assert ksg_cmi(x, y, z, k=5, exhaustive=True) == ksg_cmi(x, y, z, k=5, exhaustive=False)


def test_gaussian_cmi_plug_in_is_exact_for_gaussians_in_ten_dims():
    task, x, y, z = sample((10, 10, 10), 0.5, n=20000)
    result = mi_toolkit.estimate_cmi(x, y, z, "gaussian", preprocess=None, subsamples=2)
    assert result.estimator == "gaussian-cmi"
    assert result.mi == pytest.approx(task.cmi_closed_form, abs=0.03)


def test_ksg_cmi_refuses_a_discrete_conditioning_variable():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((500, 1)), rng.standard_normal((500, 1))
    z = rng.integers(0, 4, (500, 1)).astype(float)
    with pytest.warns(mi_toolkit.MIEstimateWarning, match="z has 100% of its rows tied"):
        result = mi_toolkit.estimate_cmi(x, y, z)
    assert result.failed and math.isnan(result.mi) and "lr" not in result.failure
    with pytest.raises(mi_toolkit.EstimationFailed, match="average estimate\(x\[z == c\]"):
        mi_toolkit.estimate_cmi(x, y, z, on_failure="raise")


def test_cmi_argument_errors():
    _, x, y, z = sample((1, 1, 1), 0.5, n=200)
    with pytest.raises(ValueError, match="conditional"):
        mi_toolkit.estimate(x, y, "smile", z=z)
    with pytest.raises(ValueError, match="valid: ksg, gaussian"):
        mi_toolkit.estimate_cmi(x, y, z, "smile")
    with pytest.raises(ValueError, match="same batch size"):
        mi_toolkit.estimate_cmi(x, y, z[:100])
    with pytest.raises(TypeError, match="unsupported argument"):
        mi_toolkit.estimate_cmi(x, y, z, variant=2)


# ------------------------------------------------------------------------------------------------- device=
def test_device_cpu_is_the_default_bit_for_bit():
    _, x, y, _ = sample((2, 2, 1), 0.5, n=600)
    kw = dict(steps=30, batch_size=64, eval_every=10, warn=False)
    assert same(mi_toolkit.estimate(x, y, "infonce", device="cpu", **kw), mi_toolkit.estimate(x, y, "infonce", **kw))
    two = dict(kw, seeds=2)
    a = mi_toolkit.estimate(x, y, "smile", device=torch.device("cpu"), **two)
    assert same(a, mi_toolkit.estimate(x, y, "smile", **two))
    assert all(p.device.type == "cpu" for m in a.estimator_modules for p in m.parameters())
    assert same(mi_toolkit.estimate(x, y, "ksg", device="cpu"), mi_toolkit.estimate(x, y, "ksg"))


def test_meta_tensors_and_the_meta_device_are_refused():
    x = torch.randn(300, 2, device="meta")
    with pytest.raises(ValueError, match="meta tensor"):
        mi_toolkit.estimate(x, x, "ksg")
    with pytest.raises(ValueError, match="meta tensor"):
        mi_toolkit.estimate(x, x, "infonce", steps=2)
    real = torch.randn(300, 2)
    with pytest.raises(ValueError, match="device='meta'"):
        mi_toolkit.estimate(real, real, "infonce", steps=2, device="meta")
    with pytest.raises(ValueError, match="device must be"):
        mi_toolkit.estimate(real, real, "infonce", steps=2, device="not-a-device")
    with pytest.raises(ValueError, match="meta tensor"):
        mi_toolkit.estimate_cmi(real, real, x)

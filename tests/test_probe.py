"""Superfluous information on images: recorded augmentation parameters are what was applied, the lower bound is
about 0 for a representation that ignores its view and clearly positive for one that copies a parameter, and
``superinfo probe`` writes the bracket."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures_state import tiny_config
from superinfo.cli import main
from superinfo.data import augmentation, preset_for
from superinfo.data.recorded import PARAMETERS, RecordedAugmentation, parameter_vector
from superinfo.tools.probe import augmentation_information
from superinfo.trainer import train


@pytest.mark.parametrize("name, size", [("cifar10", None), ("stl10", 96), ("digits", 16)])
def test_recorded_views_are_the_training_views_and_replay_from_their_parameters(name, size):
    preset = preset_for(name, size)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 44, 3), dtype=np.uint8))
    plain, recorded = augmentation(preset), RecordedAugmentation(preset)
    kinds = set()
    for k in range(40):
        torch.manual_seed(k)
        expected = plain(image)
        torch.manual_seed(k)
        view, params = recorded(image)
        assert torch.equal(view, expected)                          # the same draws, the same pixels
        assert torch.equal(recorded.replay(image, params), view)    # and the parameters are what was applied
        vector = parameter_vector(params)
        assert vector.shape == (len(PARAMETERS),) and torch.isfinite(vector).all()
        kinds.add((params["flip"], params["jitter"] is not None, params["grayscale"], params["blur_sigma"] is None))
    assert len(kinds) >= 3          # the draws cover several branches
    if preset.blur:
        assert any(not k[3] for k in kinds)


def _params(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(n, 4, generator=g), (torch.rand(n, 2, generator=g) > 0.5).float(),
                      1 + 0.4 * torch.randn(n, 3, generator=g)], dim=1)


FAST = dict(steps=300, batch_size=128, eval_batches=20)


@pytest.mark.slow
def test_the_lower_bound_is_about_zero_without_the_view_and_positive_with_a_copy():
    n = 3000
    a1, a2 = _params(n, 0), _params(n, 1)            # view 1's and view 2's parameters: independent draws
    g = torch.Generator().manual_seed(2)
    image = torch.randn(n, 8, generator=g)           # what both views share
    ignores = torch.cat([image, torch.zeros(n, 1)], dim=1)           # a function of the image alone
    of_other_view = torch.cat([image, a2], dim=1)                    # a function of v2 alone
    copies = torch.cat([image, a1[:, :4] + 0.05 * torch.randn(n, 4, generator=g)], dim=1)   # keeps crop box
    low = [augmentation_information(x, a1, **FAST)["nats"] for x in (ignores, of_other_view)]
    high = augmentation_information(copies, a1, **FAST)
    assert all(abs(v) < 0.1 for v in low), low
    assert high["nats"] > 1.0 and high["nats"] > 5 * high["stderr"], high


@pytest.mark.slow
def test_probe_writes_the_bracket(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(run, dataset="digits", image_size=8, z_dim=8, epochs=1, batch_size=32, max_steps_per_epoch=2,
                      device="cpu", sigma=1.0))
    assert main(["probe", "--run", str(run), "--images", "200", "--steps", "100", "--threads", "1"]) == 0
    saved = json.loads((run / "probe.json").read_text())
    for key in ("lower_nats", "lower_stderr", "upper_nats", "upper_nats_head", "features", "estimator",
                "per_parameter"):
        assert key in saved, key
    assert saved["features"] == "backbone" and saved["upper_nats"] is None and saved["upper_nats_head"] > 0
    assert set(saved["per_parameter"]) == set(PARAMETERS)
    assert "r2" in saved["per_parameter"]["crop_height"] and "accuracy" in saved["per_parameter"]["jitter"]
    assert "lower bound" in capsys.readouterr().out
    # superinfo eval carries the bracket of the same checkpoint into eval.json
    assert main(["eval", "--run", str(run), "--protocol", "knn", "--k", "5", "--threads", "1"]) == 0
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["superfluous_lower_nats"] == saved["lower_nats"]
    assert evaluated["superfluous_upper_nats_head"] == saved["upper_nats_head"]
    assert "kl upper bound" in capsys.readouterr().out
    head = json.loads(json.dumps(__import__("superinfo.tools.probe", fromlist=["x"]).probe_run(
        run, features="head", images=200, steps=50, write=False)))
    assert head["upper_nats"] == head["upper_nats_head"]

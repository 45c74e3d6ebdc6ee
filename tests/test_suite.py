"""The task families of the standard suite carry their truth, and the suite writes records and a heat map."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from synthetic import AdditiveNoise, MITask, Multinormal, StudentT, Transformed, make_transform
from synthetic.cli import main
from synthetic.gaussian import gaussian_mi
from synthetic.suite import HEAVIEST_TAILED, run_suite, standard_suite, write_suite_outputs


def test_every_suite_task_is_an_mitask_with_its_dims_and_a_positive_truth():
    suite = standard_suite()
    assert len(suite) == 20 and HEAVIEST_TAILED in suite
    for name, (family, task) in suite.items():
        assert isinstance(task, MITask) and task.mi > 0 and math.isfinite(task.mi)
        x, y = task.sample(50, torch.Generator().manual_seed(0))
        assert x.shape == (50, task.dim_x) and y.shape == (50, task.dim_y) and torch.isfinite(x).all()
        x2, _ = task.sample(50, torch.Generator().manual_seed(0))
        assert torch.equal(x, x2)
    assert {t.dim_x != t.dim_y for _, t in suite.values()} == {True, False}   # dims independent


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.75, 2.0])
def test_additive_noise_closed_form_matches_numeric_integration(eps):
    task = AdditiveNoise(eps)
    # h(Y) of the trapezoid density (U(0,1) convolved with U(-eps, eps)) by quadrature; I = h(Y) - log(2 eps)

    def density(t):
        return max(0.0, min(t + eps, 1.0) - max(t - eps, 0.0)) / (2 * eps)

    h, _ = integrate.quad(lambda t: -density(t) * math.log(density(t)) if density(t) > 0 else 0.0,
                          -eps, 1 + eps, points=[eps, 1 - eps, -eps + 1, 1 + eps - 1], limit=200)
    assert task.mi == pytest.approx(h - math.log(2 * eps), abs=1e-7)


def test_multinormal_dense_and_sparse_reach_their_mi_with_any_dims():
    for task in (Multinormal(3, 7, 1.5, "dense"), Multinormal(25, 25, 1.0, "sparse"), Multinormal(1, 4, 0.3)):
        idx_x, idx_y = np.arange(task.dim_x), np.arange(task.dim_x, task.dim_x + task.dim_y)
        assert gaussian_mi(task.covariance, idx_x, idx_y) == pytest.approx(task.mi, abs=1e-9)
    task = Multinormal(3, 7, 1.5, "dense")
    x, y = task.sample(100_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    empirical = np.cov(torch.cat([x, y], 1).numpy(), rowvar=False)
    assert np.abs(empirical - task.covariance).max() < 0.05
    with pytest.raises(ValueError, match="pairs"):
        Multinormal(2, 3, 1.0, pairs=3)


def test_rectangular_student_t_matches_scipy_plug_in():
    task = StudentT(2, 3.0, rho=0.5, dim_y=4)
    x, y = task.sample(60_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    ratio = task.log_density_ratio(x.numpy(), y.numpy())
    assert abs(ratio.mean() - task.mi) < 4 * ratio.std() / math.sqrt(len(ratio))


@pytest.mark.parametrize("name", ["normal-cdf", "wiggly", "bimodal", "spiral"])
def test_new_transforms_are_invertible_and_keep_the_dimension(name):
    t = make_transform(name, 4)
    # Phi saturates near 1 in the far upper tail (1 - Phi(8) is below float64's resolution there): unit scale for it
    scale = 1.0 if name == "normal-cdf" else 2.0
    y = torch.randn(2000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * scale
    assert torch.allclose(t.inverse(t.forward(y)), y, atol=1e-5) and t.out_dim(4) == 4


def test_swiss_roll_embeds_two_features_in_three():
    task = Transformed(Multinormal(2, 1, 0.5), "swiss-roll", None)
    assert (task.dim_x, task.dim_y, task.mi) == (3, 1, 0.5)
    x, _ = task.sample(500, torch.Generator().manual_seed(0), dtype=torch.float64)
    x0, _ = task.task.sample(500, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(task.transform_x.inverse(x), x0, atol=1e-6)
    with pytest.raises(ValueError, match="Swiss roll takes 2"):
        Transformed(Multinormal(3, 1, 0.5), "swiss-roll", None)


@pytest.mark.slow
def test_suite_records_heat_map_and_command(tmp_path):
    records = run_suite(["gaussian", "ksg"], samples=400, seeds=[0], tasks=["2v2-dense", "1v1-additive-0.1"],
                        progress=False)
    assert len(records) == 4 and {r["estimator"] for r in records} == {"gaussian", "ksg"}
    for r in records:
        assert r["direction"] == "estimate" and math.isfinite(r["mi"]) and math.isfinite(r["relative_error"])
    paths = write_suite_outputs(str(tmp_path / "suite"), records)
    assert json.loads(open(paths["suite.json"]).read())[0]["true_mi"] == records[0]["true_mi"]
    assert open(paths["heatmap.png"], "rb").read(8).startswith(b"\x89PNG")
    out = tmp_path / "cli"
    assert main(["bench", "--suite", "standard", "--estimators", "gaussian,smile", "--samples", "800", "--seeds",
                 "0,1", "--tasks", "1v1-wiggly", "--max-steps", "20", "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "suite.json").read_text())
    assert [r["estimator"] for r in saved] == ["gaussian", "smile"] and len(saved[1]["per_seed"]) == 2
    assert (out / "heatmap.png").exists() and (out / "suite.csv").exists()
    assert main(["bench", "--suite", "standard", "--tasks", "nope", "--out", str(tmp_path / "x")]) == 2


def test_merge_joins_runs_split_by_estimator_and_task_in_suite_order(tmp_path):
    def run(name, estimators, tasks):
        assert main(["bench", "--suite", "standard", "--estimators", estimators, "--samples", "400", "--seeds", "0",
                     "--tasks", tasks, "--out", str(tmp_path / name), "--no-progress"]) == 0
        return str(tmp_path / name)

    a = run("a", "gaussian", "1v1-wiggly,2v2-dense")
    b = run("b", "ksg", "2v2-dense,1v1-wiggly")
    out = tmp_path / "merged"
    assert main(["bench", "--suite", "standard", "--merge", f"{b},{a}", "--out", str(out)]) == 0
    merged = json.loads((out / "suite.json").read_text())
    single = {(r["task"], r["estimator"]): r["mi"] for d in (a, b)
              for r in json.loads(open(f"{d}/suite.json").read())}
    order = list(standard_suite())
    assert [(r["task"], r["estimator"]) for r in merged] == sorted(
        single, key=lambda p: (order.index(p[0]), ["ksg", "gaussian"].index(p[1])))
    assert {(r["task"], r["estimator"]): r["mi"] for r in merged} == single
    assert (out / "heatmap.png").exists()
    config = json.loads((out / "suite_config.json").read_text())
    assert config["merged_from"] == [b, a] and config["estimators"] == ["ksg", "gaussian"]
    # the same cell twice, or a folder without results, is refused with the flag's name
    assert main(["bench", "--suite", "standard", "--merge", f"{a},{a}", "--out", str(tmp_path / "m2")]) == 2
    assert main(["bench", "--suite", "standard", "--merge", f"{a},{tmp_path / 'none'}",
                 "--out", str(tmp_path / "m3")]) == 2
    assert main(["bench", "--suite", "standard", "--merge", a, "--tasks", "2v2-dense",
                 "--out", str(tmp_path / "m4")]) == 2

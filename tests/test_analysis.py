"""Reading run folders and the training-analysis plots, on hand-written run folders (no training)."""
import csv
import json
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from superinfo.tools.analysis import (CURVE_PANELS, plot_ablation, plot_final_terms, plot_training_curves,  # noqa: E402
                                read_log, read_run)
from superinfo.tools.sweep import summarize  # noqa: E402
from superinfo.trainer import LOG_COLUMNS, preset_config  # noqa: E402


def write_run(run_dir, lambda_a=0.01, lambda_b=None, epochs=2, seed=0, steps_per_epoch=4, top1=None):
    """A run folder as the trainer writes it: config.json, log.csv (a row every 2 steps and at each epoch's end,
    probe cells empty in the first row) and, with ``top1``, eval.json."""
    run_dir.mkdir(parents=True)
    cfg = preset_config("digits", out=str(run_dir), lambda_a=lambda_a, lambda_b=lambda_b, epochs=epochs, seed=seed)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    with open(run_dir / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        for step in range(2, epochs * steps_per_epoch + 1, 2):
            writer.writerow({"epoch": (step - 1) // steps_per_epoch + 1, "step": step, "lr": 1e-3, "loss": 10 - step,
                             "contrastive": -step, "mi_lower": step / 2, "superfluous_a": 100 / step,
                             "superfluous_b": 50 / step, "probe_loss": "" if step == 2 else 1.0,
                             "probe_acc": "" if step == 2 else step / 10, "images_per_s": 100.0,
                             "elapsed_s": float(step)})
    if top1 is not None:
        results = {p: {"protocol": p, "top1": v, "checkpoint_epoch": epochs} for p, v in top1.items()}
        (run_dir / "eval.json").write_text(json.dumps({**list(results.values())[-1], "results": results}))
    return run_dir


def test_read_run_gives_config_log_columns_and_eval(tmp_path):
    run = read_run(write_run(tmp_path / "r", lambda_a=0.03, top1={"linear": 0.8, "knn": 0.7}))
    assert run["config"]["lambda_a"] == 0.03 and run["lambda_b"] == 0.03      # None resolves to lambda_a
    assert run["name"] == "r" and run["eval"]["results"]["knn"]["top1"] == 0.7
    assert list(run["log"]) == LOG_COLUMNS
    np.testing.assert_array_equal(run["log"]["step"], [2, 4, 6, 8])
    np.testing.assert_array_equal(run["log"]["mi_lower"], [1, 2, 3, 4])
    assert math.isnan(run["log"]["probe_acc"][0]) and run["log"]["probe_acc"][1] == pytest.approx(0.4)
    assert run["last_log"]["loss"] == 2.0 and run["last_log"]["epoch"] == 2.0


def test_read_run_without_log_or_eval_and_not_a_run(tmp_path):
    run_dir = write_run(tmp_path / "r", lambda_a=0.1, lambda_b=0.0)
    (run_dir / "log.csv").unlink()
    run = read_run(run_dir)
    assert run["log"] == {} and run["last_log"] == {} and run["eval"] is None and run["lambda_b"] == 0.0
    assert read_log(tmp_path / "missing.csv") == {}
    with pytest.raises(ValueError, match="no config.json"):
        read_run(tmp_path)


def test_training_curves_draw_every_term_per_run(tmp_path):
    runs = [write_run(tmp_path / "a", top1={"linear": 0.8, "knn": 0.7}), write_run(tmp_path / "b", lambda_a=0.0)]
    fig = plot_training_curves(runs, x="epoch", path=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [title for title, _ in CURVE_PANELS]
    superfluous = axes[3].get_lines()
    assert len(superfluous) == 4                                # a and b for each run
    np.testing.assert_allclose(superfluous[0].get_xdata(), [0.5, 1.0, 1.5, 2.0])   # fractional epochs
    np.testing.assert_allclose(superfluous[1].get_ydata(), [25, 12.5, 50 / 6, 6.25])
    probe = axes[4].get_lines()                                 # run a: curve + linear + kNN markers; run b: curve
    assert len(probe) == 4 and [line.get_ydata()[0] for line in probe[1:3]] == [0.8, 0.7]
    assert axes[0].get_legend() is not None
    plt.close(fig)
    with pytest.raises(ValueError, match="x must be"):
        plot_training_curves(runs, x="time")
    with pytest.raises(ValueError, match="labels has 1 entries for 2 runs"):
        plot_training_curves(runs, labels=["one"])


def ablation_table():
    runs = [{"lambda_a": lam, "lambda_b": lam, "epochs": ep, "seed": s, "linear_top1": 0.5 + lam + 0.01 * s + ep / 100,
             "knn_top1": 0.4 + lam}
            for lam in (0.0, 0.01, 0.1) for ep in (10, 20) for s in (0, 1, 2)]
    return {"runs": runs, "summary": summarize(runs)}


def test_ablation_plot_one_line_per_protocol_and_epochs(tmp_path):
    table = ablation_table()
    fig = plot_ablation(table, path=tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").stat().st_size > 0
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["linear, epochs=10", "knn, epochs=10", "linear, epochs=20", "knn, epochs=20"]
    assert ax.get_xscale() == "symlog"
    # the first errorbar line: linear top-1 at epochs 10, mean over seeds 0.5 + lam + 0.01 + 0.1
    line = ax.containers[0].lines[0]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.0, 0.01, 0.1])
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [0.61, 0.62, 0.71])
    plt.close(fig)
    fig = plot_ablation(table, x="epochs", protocols=("linear",))
    assert fig.axes[0].get_legend_handles_labels()[1] == ["linear, lambda_a=0", "linear, lambda_a=0.01",
                                                          "linear, lambda_a=0.1"]
    plt.close(fig)


def test_ablation_plot_separates_untied_lambda_b_and_refuses_bad_input():
    runs = [{"lambda_a": a, "lambda_b": b, "epochs": 5, "seed": 0, "linear_top1": 0.5, "knn_top1": None}
            for a in (0.0, 0.1) for b in (0.0, 1.0)]
    fig = plot_ablation({"runs": runs, "summary": summarize(runs)})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["linear, lambda_b=0, epochs=5", "linear, lambda_b=1, epochs=5"]
    plt.close(fig)
    with pytest.raises(ValueError, match="x must be"):
        plot_ablation(ablation_table(), x="seed")
    with pytest.raises(ValueError, match="no runs"):
        plot_ablation({"runs": [], "summary": []})


def test_final_terms_against_lambda(tmp_path):
    runs = [{"lambda_a": lam, "lambda_b": lam, "epochs": 5, "seed": s, "mi_lower": 4 - 10 * lam + s,
             "superfluous_a": 100 * (1 - lam), "probe_acc": None} for lam in (0.0, 0.1) for s in (0, 2)]
    fig = plot_final_terms({"runs": runs, "summary": summarize(runs)}, path=tmp_path / "terms.png")
    assert (tmp_path / "terms.png").stat().st_size > 0 and len(fig.axes) == 3
    mi_line = fig.axes[0].containers[0].lines[0]
    np.testing.assert_allclose(np.asarray(mi_line.get_ydata(), float), [5.0, 4.0])      # mean over seeds 0, 2
    assert fig.axes[2].containers == []                         # no probe: nothing drawn
    plt.close(fig)

"""The ablation runner on digits, shrunk to seconds: the table against the run folders, skip/resume/extend on rerun,
bad grids, and the command line."""
import csv
import json
import statistics

import pytest

from fixtures_state import TINY_MODEL, cli_flags
from superinfo.cli import main
from superinfo.trainer import RUN_PRESETS
from superinfo.tools.sweep import SweepSpec, collect, format_table, mean_std, run_point, run_sweep, summarize

# a tiny encoder and two steps per epoch: each run trains and evaluates in about a second
TINY = dict(TINY_MODEL, image_size=8, batch_size=32, max_steps_per_epoch=2, log_every=1)


def tiny_spec(**kw):
    base = dict(lambdas_a=(0.0, 0.05), epochs=(1,), seeds=(0, 1), protocols=("knn",), overrides=dict(TINY))
    base.update(kw)
    return SweepSpec("digits", **base)


def last_log_row(run_dir):
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return out, run_sweep(tiny_spec(), out, progress=False)


def test_sweep_table_matches_the_run_folders(finished_sweep):
    out, table = finished_sweep
    assert (out / "sweep.png").stat().st_size > 0 and (out / "sweep_spec.json").exists()
    assert set(table["actions"].values()) == {"trained"}
    with open(out / "sweep.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(float(r["lambda_a"]), int(r["seed"])) for r in csv_rows] == [(0.0, 0), (0.0, 1), (0.05, 0), (0.05, 1)]
    for row, record in zip(csv_rows, table["runs"]):
        run_dir = out / "runs" / f"la{record['lambda_a']:g}-lb{record['lambda_a']:g}-ep1-seed{record['seed']}"
        assert row["run_dir"] == str(run_dir) == record["run_dir"]
        config = json.loads((run_dir / "config.json").read_text())
        assert (config["lambda_a"], config["lambda_b"], config["seed"]) == (record["lambda_a"], record["lambda_b"],
                                                                          record["seed"])
        evaluation = json.loads((run_dir / "eval.json").read_text())
        assert float(row["knn_top1"]) == record["knn_top1"] == evaluation["results"]["knn"]["top1"]
        assert row["linear_top1"] == "" and record["linear_top1"] is None      # not asked for
        last = last_log_row(run_dir)
        for key in ("loss", "mi_lower", "superfluous_a", "superfluous_b"):
            assert float(row[key]) == pytest.approx(float(last[key]))
        assert record["epochs_done"] == 1 and record["seconds"] > 0
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["runs"] == table["runs"] and saved["summary"] == table["summary"]
    for lam, row in zip((0.0, 0.05), table["summary"]):
        values = [r["knn_top1"] for r in table["runs"] if r["lambda_a"] == lam]
        assert (row["lambda_a"], row["seeds"], row["knn_top1_n"]) == (lam, [0, 1], 2)
        assert row["knn_top1"] == pytest.approx(statistics.mean(values))
        assert row["knn_top1_std"] == pytest.approx(statistics.stdev(values))
    assert collect(out)["runs"] == table["runs"]               # the table from the folders alone
    text = format_table(table)
    assert "0.05" in text and f"{100 * table['summary'][0]['knn_top1']:.2f}" in text


def test_rerun_skips_finished_runs(finished_sweep):
    out, table = finished_sweep
    checkpoint = out / "runs" / "la0-lb0-ep1-seed0" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    again = run_sweep(tiny_spec(), out, progress=False, plot=False)
    assert set(again["actions"].values()) == {"skipped"}
    assert checkpoint.stat().st_mtime_ns == before and again["runs"] == table["runs"]


def test_changed_settings_or_grid_in_an_existing_folder_is_an_error(finished_sweep):
    out, _ = finished_sweep
    with pytest.raises(ValueError, match=r"other settings \(batch_size: 32 there, 16 now\)"):
        run_sweep(tiny_spec(overrides=dict(TINY, batch_size=16)), out, progress=False)
    with pytest.raises(ValueError, match="another grid.*--extend"):
        run_sweep(tiny_spec(lambdas_a=(0.0,)), out, progress=False)
    spec = json.loads((out / "sweep_spec.json").read_text())
    assert len(spec["points"]) == 4                            # the refused calls changed nothing


def test_extend_adds_a_protocol_without_retraining(tmp_path):
    spec = tiny_spec(lambdas_a=(0.0,), seeds=(0,))
    run_sweep(spec, tmp_path, progress=False, plot=False)
    table = run_sweep(tiny_spec(lambdas_a=(0.0,), seeds=(0,), protocols=("linear",)), tmp_path, extend=True,
                      progress=False, plot=False)
    assert table["actions"] == {"la0-lb0-ep1-seed0": "evaluated"} and table["protocols"] == ["linear", "knn"]
    run = table["runs"][0]
    assert 0 <= run["linear_top1"] <= 1 and 0 <= run["knn_top1"] <= 1


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    spec = tiny_spec(lambdas_a=(0.01,), epochs=(2,), seeds=(0,))
    stopped = run_sweep(SweepSpec("digits", lambdas_a=(0.01,), epochs=(2,), seeds=(0,), protocols=("knn",),
                                  overrides=dict(TINY, stop_after_epochs=1)), tmp_path / "a", progress=False,
                        plot=False)
    assert list(stopped["actions"].values()) == ["stopped"]
    assert stopped["runs"][0]["epochs_done"] == 1 and stopped["runs"][0]["knn_top1"] is None
    resumed = run_sweep(spec, tmp_path / "a", progress=False, plot=False)
    assert list(resumed["actions"].values()) == ["resumed"]
    straight = run_sweep(spec, tmp_path / "b", progress=False, plot=False)
    assert list(straight["actions"].values()) == ["trained"]
    assert resumed["runs"][0]["epochs_done"] == 2
    for key in ("knn_top1", "loss", "mi_lower"):
        assert resumed["runs"][0][key] == straight["runs"][0][key]


def test_run_folder_with_other_settings_is_an_error(finished_sweep, tmp_path):
    out, _ = finished_sweep
    spec = tiny_spec()
    cfg = spec.point_config(spec.points()[0], out / "runs" / "la0.05-lb0.05-ep1-seed0")   # lambda 0 into 0.05's
    with pytest.raises(ValueError, match="other settings.*lambda_a"):
        run_point(cfg, ("knn",))


@pytest.mark.parametrize("kw, message", [
    (dict(lambdas_a=()), r"lambdas_a \(--lambda-a\) must hold at least one value"),
    (dict(seeds=[]), r"seeds \(--seeds\) must hold at least one value"),
    (dict(lambdas_a=(0.0, -0.1)), r"lambdas_a \(--lambda-a\) holds a negative lambda"),
    (dict(lambdas_b=(-1.0,)), r"lambdas_b \(--lambda-b\) holds a negative lambda"),
    (dict(lambdas_a=(0.1, 0.1)), "repeats"),
    (dict(epochs=(0,)), "epochs"),
    (dict(protocols=("knn", "svm")), "unknown protocols"),
    (dict(overrides=dict(TINY, seed=3)), "may not set seed"),
    (dict(overrides=dict(TINY, widht=3)), "unknown TrainConfig fields"),
])
def test_bad_grid_is_refused_before_anything_is_written(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(tiny_spec(**kw), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_negative_lambda_needs_the_allow_flag_and_unknown_preset_is_named():
    spec = tiny_spec(lambdas_a=(-0.01,), overrides=dict(TINY, allow_negative_lambda=True))
    assert spec.points()[0].lambda_a == -0.01
    with pytest.raises(ValueError, match="unknown preset 'digitz'"):
        SweepSpec("digitz").points()


def test_product_grid_when_lambda_b_is_given():
    points = tiny_spec(lambdas_a=(0.0, 0.1), lambdas_b=(0.0, 1.0), epochs=(1, 3), seeds=(0,)).points()
    assert len(points) == 8 and len({p.name for p in points}) == 8
    assert tiny_spec(epochs=None).points()[0].epochs == RUN_PRESETS["digits"]["epochs"]    # the preset's


def test_summary_skips_missing_values_and_uses_sample_std():
    records = [{"lambda_a": 0.0, "lambda_b": 0.0, "epochs": 1, "seed": s, "linear_top1": v, "knn_top1": None}
               for s, v in enumerate((0.5, 0.7, None))]
    (row,) = summarize(records)
    assert row["seeds"] == [0, 1, 2] and row["linear_top1_n"] == 2
    assert row["linear_top1"] == pytest.approx(0.6) and row["linear_top1_std"] == pytest.approx(0.1414213562)
    assert row["knn_top1"] is None and row["knn_top1_std"] is None
    assert mean_std([0.3]) == (0.3, 0.0)


def test_cli_contract(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["sweep", "--preset", "digits", "--lambda-a", "0", "--epochs", "1", "--seeds", "0", "--protocols", "knn",
            "--out", str(out), *cli_flags(**TINY), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "kNN top-1 %" in printed and "sweep.csv" in printed
    assert (out / "runs" / "la0-lb0-ep1-seed0" / "eval.json").exists() and (out / "sweep.png").exists()
    assert main(argv[:4] + ["0.01"] + argv[5:]) == 2           # another grid in the same folder
    assert "--extend" in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["--preset", "digitz", "--lambda-a", "0"],
    ["--preset", "digits", "--lambda-a", "0,x"],
    ["--preset", "digits", "--lambda-a=-0.1"],
    ["--preset", "digits", "--lambda-a", ""],
    ["--preset", "digits", "--lambda-a", "0", "--seeds", "a"],
    ["--preset", "digits", "--lambda-a", "0", "--protocols", "svm"],
])
def test_cli_rejects_bad_input(tmp_path, args, capsys):
    assert main(["sweep", *args, "--out", str(tmp_path / "never"), "--no-progress"]) == 2
    assert not (tmp_path / "never").exists()


def test_a_config_field_added_later_counts_as_its_default(finished_sweep):
    out, _ = finished_sweep
    run_dir = out / "runs" / "la0-lb0-ep1-seed0"
    config = json.loads((run_dir / "config.json").read_text())
    saved = dict(config)
    config.pop("lambda_slack")                # as if the run predated the field: its default is the preset's
    (run_dir / "config.json").write_text(json.dumps(config))
    try:
        spec = tiny_spec()
        assert run_point(spec.point_config(spec.points()[0], run_dir), ("knn",)) == "skipped"
    finally:
        (run_dir / "config.json").write_text(json.dumps(saved))


@pytest.mark.slow
def test_automatic_lambda_is_a_grid_point(tmp_path):
    from superinfo.tools.analysis import plot_ablation, plot_final_terms

    spec = tiny_spec(lambdas_a=(0.0, "auto"), seeds=(0,), epochs=(2,))
    table = run_sweep(spec, tmp_path, progress=False)
    assert [r["lambda_a"] for r in table["summary"]] == [0.0, "auto"]
    auto = table["runs"][-1]
    assert auto["lambda_b"] == "auto" and auto["lambda_final"] > 0
    assert (tmp_path / "runs" / "laauto-lbauto-ep2-seed0" / "checkpoint.pt").exists()
    config = json.loads((tmp_path / "runs" / "laauto-lbauto-ep2-seed0" / "config.json").read_text())
    assert config["lambda_a"] == "auto" and config["lambda_b"] is None
    assert "auto" in format_table(table) and (tmp_path / "sweep.png").stat().st_size > 0
    plot_ablation(table, path=tmp_path / "a.png")
    plot_final_terms(table, path=tmp_path / "f.png")
    with pytest.raises(ValueError, match="leave lambdas_b"):
        tiny_spec(lambdas_a=("auto",), lambdas_b=(0.1,)).points()


@pytest.mark.slow
def test_sweep_bracket_columns_come_from_each_runs_probe(tmp_path):
    table = run_sweep(tiny_spec(seeds=(0,)), tmp_path, progress=False, bracket=True,
                      bracket_options=dict(images=64, steps=30, batch_size=32, heldout_fraction=0.5))
    for record in table["runs"]:
        probe = json.loads((tmp_path / "runs" / record["run_dir"].split("/")[-1] / "probe.json").read_text())
        assert probe["features"] == "backbone" and probe["checkpoint_epoch"] == record["epochs"]
        assert record["superfluous_lower_nats"] == probe["lower_nats"]
        assert record["superfluous_upper_nats_head"] == probe["upper_nats_head"] > 0
    assert all(r["superfluous_lower_nats_n"] == 1 for r in table["summary"])
    assert "superfluous lower (h)" in format_table(table)
    assert (tmp_path / "sweep_bracket.png").stat().st_size > 0
    with open(tmp_path / "sweep.csv", newline="") as f:
        assert "superfluous_lower_nats" in next(csv.reader(f))
    assert collect(tmp_path)["runs"] == [{k: v for k, v in r.items()} for r in table["runs"]]


def test_sweep_without_bracket_leaves_the_columns_empty(finished_sweep):
    _, table = finished_sweep
    assert all(r["superfluous_lower_nats"] is None for r in table["runs"])
    assert "superfluous lower" not in format_table(table)

"""The bias benchmark's CLI contract: flags, output files and fields."""
import csv
import json

import pytest

from synthetic.bench import BenchConfig, run_bench
from synthetic.cli import main

CONTRACT_FIELDS = {"estimator", "true_mi", "mean", "std", "bias", "seconds_per_step"}


def test_bench_cli_writes_the_contract_outputs(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--task", "gaussian", "--dim", "4", "--mi", "1,2", "--batch-size", "16",
                 "--steps-per-level", "40", "--estimators", "infonce,smile,club", "--seed", "0", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 3 * 2
    for r in records:
        assert CONTRACT_FIELDS <= set(r)
        assert r["bias"] == pytest.approx(r["mean"] - r["true_mi"])
        assert r["seconds_per_step"] > 0
    assert [r["true_mi"] for r in records if r["estimator"] == "smile"] == [1.0, 2.0]
    assert {r["direction"] for r in records if r["estimator"] == "club"} == {"upper"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6 and CONTRACT_FIELDS <= set(rows[0])
    assert (out / "bias.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "estimator" in printed and "smile" in printed and "results.json" in printed


def test_bench_is_reproducible_for_a_seed():
    config = BenchConfig(dim=3, levels=[1.0], batch_size=8, steps_per_level=20, estimators=["nwj"], window=10)
    a, b = run_bench(config, progress=False)[0], run_bench(config, progress=False)[0]
    assert a[0]["mean"] == b[0]["mean"]


def test_bench_with_transform_and_student_t_tasks(tmp_path):
    assert main(["bench", "--dim", "2", "--mi", "1", "--batch-size", "8", "--steps-per-level", "10", "--estimators",
                 "ba", "--transform", "cubic", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["bench", "--task", "student-t", "--dof", "4", "--dim", "2", "--mi", "1", "--batch-size", "8",
                 "--steps-per-level", "10", "--estimators", "doe", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "b" / "results.json").read_text())[0]
    assert record["true_mi"] == pytest.approx(1.0) and "student-t" in record["task"]


def test_bench_cli_rejects_unknown_estimators_with_the_valid_list(tmp_path, capsys):
    code = main(["bench", "--estimators", "infonce,foo", "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "valid estimators: ba, club" in capsys.readouterr().err


def test_bench_cli_rejects_bad_mi_lists(capsys):
    assert main(["bench", "--mi", "2,four"]) == 2          # argparse's usage error, returned (not raised)
    assert "--mi" in capsys.readouterr().err


def test_bench_rejects_unreachable_levels():
    with pytest.raises(ValueError, match="mi must be"):
        run_bench(BenchConfig(levels=[-1.0], steps_per_level=10, window=5), progress=False)

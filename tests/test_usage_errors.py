"""Wrong usages a newcomer makes, one table: every one must be a clear error before any compute.

CLI cases (``mi-toolkit`` and ``superinfo``, run in-process through ``main(argv)``): exit status 2, a message on stderr
with ``error:`` that names the argument, no traceback, and no file created or changed anywhere under the test's
folders.  Python API cases: ``ValueError`` or ``TypeError`` whose message names the argument.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from superinfo.cli import main as superinfo_main
from synthetic.cli import main as mi_toolkit_main

MAINS = {"mi-toolkit": mi_toolkit_main, "superinfo": superinfo_main}


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_digits_run):
    """A folder with inputs to misuse: good and broken .npy/.csv files, a finished digits run, folders that already
    hold results, a file where a folder is expected."""
    root = tmp_path_factory.mktemp("usage")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", x + 0.1)
    np.save(root / "short.npy", x[:50])
    np.save(root / "nan.npy", np.where(np.arange(200).reshape(100, 2) == 7, np.nan, x))
    (root / "corrupt.npy").write_bytes(b"garbage\n" * 10)
    full = (root / "x.npy").read_bytes()
    (root / "truncated.npy").write_bytes(full[: len(full) // 2])
    np.save(root / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (root / "text.csv").write_text("a,b\nc,d\n")
    (root / "empty.csv").write_text("")
    (root / "result.json").write_text("{}")
    (root / "plain_file").write_text("not a folder")
    (root / "full").mkdir()
    (root / "full" / "results.json").write_text("[]")       # earlier results
    (root / "data").mkdir()
    (root / "exported.pt").write_bytes(b"earlier export")
    shutil.copytree(tiny_digits_run, root / "run")          # the shared finished run (conftest.py), a copy
    return root


def _snapshot(*folders) -> dict:
    files = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.stat()
                files[str(p)] = (p.is_dir(), st.st_size, st.st_mtime_ns if not p.is_dir() else 0)
    return files


# (id, program, argv with {W} = the fixture folder, text the message must contain)
CLI_CASES = [
    # mi-toolkit bench
    ("bench-window-0", "mi-toolkit", "bench --window 0 --out {W}/new", "--window"),
    ("bench-window-gt-steps", "mi-toolkit", "bench --window 100 --steps-per-level 10 --out {W}/new", "--window"),
    ("bench-threads-neg", "mi-toolkit", "bench --threads -1 --out {W}/new", "--threads"),
    ("bench-threads-text", "mi-toolkit", "bench --threads many --out {W}/new", "--threads"),
    ("bench-grad-clip-neg", "mi-toolkit", "bench --grad-clip -1 --out {W}/new", "--grad-clip"),
    ("bench-grad-clip-nan", "mi-toolkit", "bench --grad-clip nan --out {W}/new", "--grad-clip"),
    ("bench-mi-empty-item", "mi-toolkit", "bench --mi 0,,1 --out {W}/new", "--mi"),
    ("bench-mi-negative", "mi-toolkit", "bench --mi 2,-1 --out {W}/new", "--mi"),
    ("bench-mi-inf", "mi-toolkit", "bench --mi inf --out {W}/new", "--mi"),
    ("bench-batch-1", "mi-toolkit", "bench --batch-size 1 --out {W}/new", "--batch-size"),
    ("bench-steps-0", "mi-toolkit", "bench --steps-per-level 0 --out {W}/new", "--steps-per-level"),
    ("bench-unknown-estimator", "mi-toolkit", "bench --estimators infonce,foo --out {W}/new", "--estimators"),
    ("bench-lr-0", "mi-toolkit", "bench --lr 0 --out {W}/new", "--lr"),
    ("bench-lr-inf", "mi-toolkit", "bench --lr inf --out {W}/new", "--lr"),
    ("bench-dim-0", "mi-toolkit", "bench --dim 0 --out {W}/new", "--dim"),
    ("bench-task", "mi-toolkit", "bench --task uniform --out {W}/new", "--task"),
    ("bench-critic", "mi-toolkit", "bench --critic deep --out {W}/new", "--critic"),
    ("bench-dof-0", "mi-toolkit", "bench --task student-t --dof 0 --out {W}/new", "--dof"),
    ("bench-hidden-0", "mi-toolkit", "bench --hidden 0 --out {W}/new", "--hidden"),
    ("bench-seed-neg", "mi-toolkit", "bench --seed -1 --out {W}/new", "--seed"),
    ("bench-out-has-results", "mi-toolkit", "bench --out {W}/full", "--out"),
    ("bench-out-is-file", "mi-toolkit", "bench --out {W}/plain_file", "--out"),
    ("bench-out-under-file", "mi-toolkit", "bench --out {W}/plain_file/sub", "--out"),
    ("bench-resume-nothing", "mi-toolkit", "bench --resume --out {W}/data", "--resume"),
    # mi-toolkit estimate
    ("estimate-missing-x", "mi-toolkit", "estimate --x {W}/nope.npy --y {W}/y.npy", "--x"),
    ("estimate-missing-y", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/nope.npy", "--y"),
    ("estimate-corrupt", "mi-toolkit", "estimate --x {W}/corrupt.npy --y {W}/y.npy", "--x"),
    ("estimate-truncated", "mi-toolkit", "estimate --x {W}/truncated.npy --y {W}/y.npy", "--x"),
    ("estimate-pickled-objects", "mi-toolkit", "estimate --x {W}/objects.npy --y {W}/y.npy", "--x"),
    ("estimate-nan", "mi-toolkit", "estimate --x {W}/nan.npy --y {W}/y.npy", "--x"),
    ("estimate-rows-differ", "mi-toolkit", "estimate --x {W}/short.npy --y {W}/y.npy", "--x"),
    ("estimate-batch-gt-data", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --batch-size 90", "--batch-size"),
    ("estimate-steps-0", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --steps 0", "--steps"),
    ("estimate-heldout-1", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --heldout-fraction 1",
     "--heldout-fraction"),
    ("estimate-heldout-neg", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --heldout-fraction -0.1",
     "--heldout-fraction"),
    ("estimate-unknown-estimator", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --estimator foo",
     "--estimator"),
    ("estimate-json-exists", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --json {W}/result.json --batch-size 16", "--json"),
    ("estimate-json-is-folder", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --json {W}/data --batch-size 16", "--json"),
    ("estimate-json-unwritable", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --json {W}/plain_file/r.json --batch-size 16",
     "--json"),
    ("estimate-x-is-folder", "mi-toolkit", "estimate --x {W}/data --y {W}/y.npy", "--x"),
    ("estimate-csv-text", "mi-toolkit", "estimate --x {W}/text.csv --y {W}/y.npy", "--x"),
    ("estimate-csv-empty", "mi-toolkit", "estimate --x {W}/empty.csv --y {W}/y.npy", "--x"),
    ("estimate-lr-neg", "mi-toolkit", "estimate --x {W}/x.npy --y {W}/y.npy --lr -1", "--lr"),
    # superinfo world / sweep-world
    ("world-steps-0", "superinfo", "world --lambda 0.1 --steps 0 --out {W}/new", "--steps"),
    ("world-lr-inf", "superinfo", "world --lambda 0.1 --lr inf --out {W}/new", "--lr"),
    ("world-lambda-nan", "superinfo", "world --lambda nan --out {W}/new", "--lambda"),
    ("world-lambda-negative", "superinfo", "world --lambda -0.1 --out {W}/new", "--allow-negative-lambda"),
    ("world-batch-1", "superinfo", "world --lambda 0.1 --batch-size 1 --out {W}/new", "--batch-size"),
    ("world-zdim-0", "superinfo", "world --lambda 0.1 --z-dim 0 --out {W}/new", "--z-dim"),
    ("world-temperature-0", "superinfo", "world --lambda 0.1 --temperature 0 --out {W}/new", "--temperature"),
    ("world-sigma-neg", "superinfo", "world --lambda 0.1 --sigma -1 --out {W}/new", "--sigma"),
    ("world-noise-0", "superinfo", "world --lambda 0.1 --noise-std 0 --out {W}/new", "--noise-std"),
    ("world-threads-neg", "superinfo", "world --lambda 0.1 --threads -2 --out {W}/new", "--threads"),
    ("world-kind", "superinfo", "world --lambda 0.1 --world cubic --out {W}/new", "--world"),
    ("world-bound", "superinfo", "world --lambda 0.1 --bound mine --out {W}/new", "--bound"),
    ("world-out-has-results", "superinfo", "world --lambda 0.1 --out {W}/full", "--out"),
    ("sweep-world-lambdas-empty-item", "superinfo", "sweep-world --lambdas 0,,1 --out {W}/new", "--lambdas"),
    ("sweep-world-bounds", "superinfo", "sweep-world --bounds kl,foo --out {W}/new", "--bounds"),
    ("sweep-world-seeds", "superinfo", "sweep-world --seeds -1 --out {W}/new", "--seeds"),
    ("sweep-world-out-has-results", "superinfo", "sweep-world --out {W}/full", "--out"),
    # superinfo train
    ("train-no-data-root", "superinfo", "train --preset cifar10 --out {W}/new", "--data-root"),
    ("train-data-root-missing", "superinfo", "train --dataset imagefolder --data-root {W}/nope --out {W}/new",
     "--data-root"),
    ("train-epochs-0", "superinfo", "train --preset digits --epochs 0 --out {W}/new", "--epochs"),
    ("train-lr-neg", "superinfo", "train --preset digits --lr -1 --out {W}/new", "--lr"),
    ("train-lr-inf", "superinfo", "train --preset digits --lr inf --out {W}/new", "--lr"),
    ("train-lambda-empty-item", "superinfo", "train --preset digits --lambda-a 0,,1 --out {W}/new", "--lambda-a"),
    ("train-batch-1", "superinfo", "train --preset digits --batch-size 1 --out {W}/new", "--batch-size"),
    ("train-momentum", "superinfo", "train --preset digits --momentum 1.5 --out {W}/new", "--momentum"),
    ("train-device", "superinfo", "train --preset digits --device gpu7 --out {W}/new", "--device"),
    ("train-num-workers", "superinfo", "train --preset digits --num-workers -1 --out {W}/new", "--num-workers"),
    ("train-arch", "superinfo", "train --preset digits --arch vgg --out {W}/new", "arch"),
    ("train-optimizer", "superinfo", "train --preset digits --optimizer rmsprop --out {W}/new", "optimizer"),
    ("train-preset", "superinfo", "train --preset mnist --out {W}/new", "--preset"),
    ("train-out-is-a-run", "superinfo", "train --preset digits --out {W}/run", "--out"),
    ("train-out-has-results", "superinfo", "train --preset digits --out {W}/full", "--out"),
    ("train-resume-missing", "superinfo", "train --resume {W}/nope", "--resume"),
    ("train-resume-not-a-run", "superinfo", "train --resume {W}/data", "--resume"),
    ("train-resume-with-preset", "superinfo", "train --resume {W}/run --preset digits", "--preset"),
    ("train-resume-changes-lambda", "superinfo", "train --resume {W}/run --lambda-a 0.5", "lambda_a"),
    # superinfo eval
    ("eval-run-missing", "superinfo", "eval --run {W}/nope --protocol knn", "--run"),
    ("eval-run-not-a-run", "superinfo", "eval --run {W}/data --protocol knn", "--run"),
    ("eval-protocol", "superinfo", "eval --run {W}/run --protocol svm", "--protocol"),
    ("eval-k-0", "superinfo", "eval --run {W}/run --protocol knn --k 0", "--k"),
    ("eval-k-gt-train-set", "superinfo", "eval --run {W}/run --protocol knn --k 5000", "--k"),
    ("eval-epochs-0", "superinfo", "eval --run {W}/run --protocol linear --epochs 0", "--epochs"),
    ("eval-temperature-0", "superinfo", "eval --run {W}/run --protocol knn --temperature 0", "--temperature"),
    ("eval-data-root-missing", "superinfo", "eval --run {W}/run --protocol knn --data-root {W}/nope", "--data-root"),
    # superinfo demo
    ("demo-seeds-empty-item", "superinfo", "demo --seeds 0,,1 --out {W}/new", "--seeds"),
    ("demo-seeds-text", "superinfo", "demo --seeds a,b --out {W}/new", "--seeds"),
    ("demo-epochs-0", "superinfo", "demo --epochs 0 --out {W}/new", "--epochs"),
    ("demo-lambda-inf", "superinfo", "demo --lambda inf --out {W}/new", "--lambda"),
    ("demo-out-has-results", "superinfo", "demo --out {W}/full", "--out"),
    # superinfo sweep
    ("sweep-lambda-empty-item", "superinfo", "sweep --preset digits --lambda-a 0,,1 --out {W}/new", "--lambda-a"),
    ("sweep-seeds-neg", "superinfo", "sweep --preset digits --lambda-a 0 --seeds -1 --out {W}/new", "--seeds"),
    ("sweep-protocols", "superinfo", "sweep --preset digits --lambda-a 0 --protocols svm --out {W}/new",
     "--protocols"),
    ("sweep-epochs-0", "superinfo", "sweep --preset digits --lambda-a 0 --epochs 0 --out {W}/new", "--epochs"),
    ("sweep-no-data-root", "superinfo", "sweep --preset cifar10 --lambda-a 0 --out {W}/new", "--data-root"),
    ("sweep-out-has-results", "superinfo", "sweep --preset digits --lambda-a 0 --out {W}/full", "--out"),
    # superinfo export / transfer
    ("export-run-missing", "superinfo", "export --run {W}/nope --out {W}/new.pt", "--run"),
    ("export-out-exists", "superinfo", "export --run {W}/run --out {W}/exported.pt", "--out"),
    ("export-out-under-file", "superinfo", "export --run {W}/run --out {W}/plain_file/a.pt", "--out"),
    ("export-format", "superinfo", "export --run {W}/run --format onnx --out {W}/new.pt", "--format"),
    ("transfer-dataset", "superinfo", "transfer --run {W}/run --datasets svhn --data-root {W}/data", "--datasets"),
    ("transfer-data-root-missing", "superinfo", "transfer --run {W}/run --datasets mnist --data-root {W}/nope",
     "--data-root"),
    ("transfer-epochs-0", "superinfo", "transfer --run {W}/run --datasets mnist --data-root {W}/data --epochs 0",
     "--epochs"),
    ("transfer-run-missing", "superinfo", "transfer --run {W}/nope --datasets mnist --data-root {W}/data", "--run"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_usage_error(case, world, capsys, monkeypatch):
    _, program, argv, names = case
    monkeypatch.chdir(world)
    before = _snapshot(world)
    code = MAINS[program]([a.replace("{W}", str(world)) for a in argv.split()])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error:" in err and names in err, err
    assert "Traceback" not in err
    assert _snapshot(world) == before, "a failed command created or changed files"


# ------------------------------------------------------------------------------------------------ Python API
def _api_cases():
    import mi_toolkit
    from superinfo.trainer import TrainConfig, preset_config
    from synthetic import CorrelatedGaussian
    from synthetic.bench import BenchConfig

    x = torch.randn(64, 2)
    nan = x.clone()
    nan[3, 1] = float("nan")
    return [
        ("estimate-eval-batches-0", lambda: mi_toolkit.estimate(x, x, "infonce", steps=1, batch_size=8,
                                                                eval_batches=0), "eval_batches"),
        ("estimate-steps-0", lambda: mi_toolkit.estimate(x, x, steps=0, batch_size=8), "steps"),
        ("estimate-batch-1", lambda: mi_toolkit.estimate(x, x, steps=1, batch_size=1), "batch_size"),
        ("estimate-batch-gt-data", lambda: mi_toolkit.estimate(x, x, steps=1, batch_size=60), "batch_size"),
        ("estimate-heldout-1", lambda: mi_toolkit.estimate(x, x, steps=1, batch_size=8, heldout_fraction=1.0),
         "heldout_fraction"),
        ("estimate-name", lambda: mi_toolkit.estimate(x, x, "foo", steps=1, batch_size=8), "foo"),
        ("estimate-rows", lambda: mi_toolkit.estimate(x[:10], x, steps=1, batch_size=8), "batch size"),
        ("estimate-nan", lambda: mi_toolkit.estimate(nan, x, steps=1, batch_size=8), "NaN"),
        ("estimate-lr", lambda: mi_toolkit.estimate(x, x, steps=1, batch_size=8, lr=float("inf")), "lr"),
        ("estimator-name", lambda: mi_toolkit.estimator("foo", x_dim=2, y_dim=2), "foo"),
        ("bench-window", lambda: BenchConfig(window=0, steps_per_level=10).validate(), "window"),
        ("bench-batch", lambda: BenchConfig(batch_size=1).validate(), "batch_size"),
        ("preset-unknown", lambda: preset_config("mnist"), "preset"),
        ("preset-epochs", lambda: preset_config("digits", epochs=0), "epochs"),
        ("config-lr", lambda: TrainConfig(lr=-1.0).validate(), "lr"),
        ("config-arch", lambda: TrainConfig(arch="vgg").validate(), "arch"),
        ("gaussian-dim", lambda: CorrelatedGaussian(dim=0, mi=1.0), "dim"),
        ("gaussian-mi", lambda: CorrelatedGaussian(dim=2, mi=-1.0), "mi"),
    ]


API_IDS = ["estimate-eval-batches-0", "estimate-steps-0", "estimate-batch-1", "estimate-batch-gt-data",
           "estimate-heldout-1", "estimate-name", "estimate-rows", "estimate-nan", "estimate-lr", "estimator-name",
           "bench-window", "bench-batch", "preset-unknown", "preset-epochs", "config-lr", "config-arch",
           "gaussian-dim", "gaussian-mi"]


@pytest.mark.parametrize("index", range(len(API_IDS)), ids=API_IDS)
def test_api_usage_error(index):
    name, call, names = _api_cases()[index]
    assert name == API_IDS[index]
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert names in str(info.value), str(info.value)


def test_the_table_is_large_enough():
    assert len(CLI_CASES) + len(API_IDS) >= 60


def test_debug_shows_the_traceback(world, capsys):
    with pytest.raises(Exception):
        superinfo_main(["eval", "--run", str(world / "nope"), "--protocol", "knn", "--debug"])
    assert mi_toolkit_main(["estimate", "--x", str(world / "nope.npy"), "--y", str(world / "y.npy")]) == 2


def test_help_shows_a_description_and_default_for_every_option(capsys):
    import argparse

    from superinfo.cli import build_parser as superinfo_parser
    from synthetic.cli import build_parser as mi_toolkit_parser
    for parser in (superinfo_parser(), mi_toolkit_parser()):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for command, sp in sub.choices.items():
            for action in sp._actions:
                if action.option_strings and action.dest != "help":
                    assert action.help, f"{sp.prog} {action.option_strings[0]} has no help"
            text = sp.format_help()
            assert "(default:" in text or command == "list", f"{sp.prog} --help shows no default"
    for main in MAINS.values():
        assert main(["--version"]) == 0
        assert "0." in capsys.readouterr().out


def test_a_data_error_found_after_the_checks_leaves_no_empty_run_folder(tmp_path, capsys):
    broken = tmp_path / "cifar" / "cifar-10-batches-py"
    broken.mkdir(parents=True)
    (broken / "data_batch_1").write_bytes(b"junk")
    assert superinfo_main(["train", "--preset", "cifar10", "--data-root", str(tmp_path / "cifar"), "--out",
                           str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "cifar10 data" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()

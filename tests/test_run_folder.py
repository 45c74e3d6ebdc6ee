"""--overwrite never loses work: the earlier results are replaced only once the new ones exist, a failed or
interrupted command gets them back, and files the tool did not write are never touched.  An --out that holds
something else says what it holds."""
from __future__ import annotations

import signal

import pytest

from mi_toolkit.cli_support import ReplaceOnSuccess, check_output_dir
from mi_toolkit.errors import ArgumentError
from superinfo.cli import main

TINY = ["train", "--preset", "digits", "--epochs", "1", "--max-steps-per-epoch", "2", "--arch", "tiny", "--width", "4",
        "--batch-size", "16", "--no-progress", "--threads", "1"]


def _files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ow") / "run"
    assert main(TINY + ["--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("failure", [
    ["--dataset", "imagefolder", "--data-root", "{empty}"],      # the data fails to load after the checks
    ["--lr", "1e30"],                                            # the loss goes non-finite in the first steps
])
def test_overwrite_that_fails_keeps_the_earlier_run(finished_run, tmp_path, failure, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("the user's own file")
    (tmp_path / "empty" / "class_a").mkdir(parents=True)        # an ImageFolder with no image
    before = _files(run)
    argv = TINY + [a.replace("{empty}", str(tmp_path / "empty")) for a in failure] + ["--out", str(run),
                                                                                      "--overwrite"]
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err
    assert _files(run) == before, err                  # every byte of the earlier run is back
    assert "restored" in err and not (run / ReplaceOnSuccess.ASIDE).exists()


def test_overwrite_that_succeeds_replaces_only_what_the_tool_wrote(finished_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("the user's own file")
    old_log = (run / "log.csv").read_bytes()
    assert main(TINY + ["--seed", "1", "--out", str(run), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "replaced the earlier results" in err and "config.json" in err
    assert (run / "notes.txt").read_text() == "the user's own file"
    assert (run / "log.csv").read_bytes() != old_log and '"seed": 1' in (run / "config.json").read_text()
    assert not (run / ReplaceOnSuccess.ASIDE).exists()


def test_interrupted_overwrite_restores(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("old")
    (out / "mine.txt").write_text("keep")
    with pytest.raises(KeyboardInterrupt):
        with ReplaceOnSuccess(out, ("result.json",)):
            assert not (out / "result.json").exists() and (out / "mine.txt").exists()
            (out / "result.json").write_text("half-written new")
            raise KeyboardInterrupt
    assert (out / "result.json").read_text() == "old" and (out / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "result.json"]


def test_a_leftover_aside_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    (out / ReplaceOnSuccess.ASIDE).mkdir(parents=True)
    (out / "result.json").write_text("new")
    with pytest.raises(ArgumentError, match="an earlier --overwrite kept aside"):
        with ReplaceOnSuccess(out, ("result.json",)):
            pass
    assert (out / "result.json").read_text() == "new"


def test_out_with_unrelated_files_says_what_is_there(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "nohup.log").write_text("a log the user redirected here")
    with pytest.raises(ArgumentError, match=r"holds nohup.log, which are not results of this command"):
        check_output_dir(out, known=("checkpoint.pt", "config.json"))
    (out / "config.json").write_text("{}")
    with pytest.raises(ArgumentError, match=r"already holds results \(config.json\) and other files \(nohup.log"):
        check_output_dir(out, known=("checkpoint.pt", "config.json"))


def test_train_out_with_an_unrelated_file_is_named(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.log").write_text("x")
    assert main(TINY + ["--out", str(out)]) == 2
    assert "train.log" in capsys.readouterr().err


def test_bench_overwrite_that_fails_keeps_the_earlier_results(tmp_path, monkeypatch, capsys):
    from synthetic import bench
    from synthetic.cli import main as mi_toolkit_main

    out = tmp_path / "bench"
    argv = ["bench", "--mi", "1", "--steps-per-level", "20", "--window", "5", "--estimators", "infonce",
            "--batch-size", "16", "--out", str(out), "--no-progress"]
    assert mi_toolkit_main(argv) == 0
    before = _files(out)

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(bench, "run_bench", interrupted)
    assert mi_toolkit_main(argv + ["--overwrite"]) == 130
    assert _files(out) == before, capsys.readouterr().err
    assert signal.SIGINT    # (the CLI's Ctrl-C path: exit 130, earlier results restored)


def test_a_folder_a_live_process_writes_is_refused_and_a_stale_lock_is_taken_over(finished_run, tmp_path, capsys):
    import os
    import socket
    import subprocess
    import sys

    from mi_toolkit.cli_support import LOCK, FolderLock
    out = tmp_path / "busy"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(f"{sleeper.pid}\n{socket.gethostname()}\n")     # a live writer
        assert main(TINY + ["--out", str(out)]) == 2
        assert f"another run is writing there (process {sleeper.pid}" in capsys.readouterr().err
        with pytest.raises(ArgumentError, match="another run is writing"):
            with FolderLock(out):
                pass
        assert (out / LOCK).read_text().startswith(str(sleeper.pid))        # the live writer's lock stays
    finally:
        sleeper.kill()
        sleeper.wait()
    with FolderLock(out):                      # its process is gone: the stale lock is taken over
        assert (out / LOCK).read_text().startswith(str(os.getpid()))
    assert not (out / LOCK).exists()
    assert main(TINY + ["--out", str(tmp_path / "fresh")]) == 0 and not (tmp_path / "fresh" / LOCK).exists()


def test_data_root_that_the_data_set_ignores_is_refused(tmp_path, capsys):
    (tmp_path / "my_images" / "cats").mkdir(parents=True)
    assert main(TINY + ["--data-root", str(tmp_path / "my_images"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--dataset imagefolder" in err and "not read by --dataset digits" in err


def test_resume_with_fewer_epochs_than_finished_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    two_epochs = TINY[:TINY.index("--epochs") + 1] + ["2"] + TINY[TINY.index("--epochs") + 2:]
    assert main(two_epochs + ["--out", str(run)]) == 0
    before = (run / "config.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 2
    assert "already finished 2 epoch(s)" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == before


def test_a_run_stopped_before_its_first_checkpoint_is_told_how_to_restart(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "log.csv").write_text("epoch,step\n")
    assert main(TINY + ["--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "stopped before its first epoch finished" in err and "start it again with --overwrite" in err
    assert main(TINY + ["--out", str(run), "--overwrite"]) == 0 and (run / "checkpoint.pt").exists()


def test_output_paths_are_tried_for_real(tmp_path, capsys):
    """Permission bits cannot tell a virtual or read-only file system: the checks create (and remove) a file."""
    from mi_toolkit.cli_support import check_output_file
    from synthetic.cli import main as mi_toolkit_main

    assert main(TINY + ["--out", "/proc/superinfo-run"]) == 2
    assert "--out /proc/superinfo-run: cannot be created: cannot write in /proc" in capsys.readouterr().err
    with pytest.raises(ArgumentError, match="--json /proc/r.json: cannot write in /proc"):
        check_output_file("/proc/r.json", "--json")
    np_x = tmp_path / "x.npy"
    import numpy as np
    np.save(np_x, np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32))
    assert mi_toolkit_main(["estimate", "--x", str(np_x), "--y", str(np_x), "--estimator", "gaussian", "--json",
                            "/proc/r.json"]) == 2
    assert "cannot write in /proc" in capsys.readouterr().err
    check_output_file(tmp_path / "a" / "b" / "r.json", "--json")      # creatable: and nothing is left behind
    assert not (tmp_path / "a").exists()


def test_ctrl_c_while_the_parser_is_built_is_an_answer(capsys):
    from mi_toolkit.cli_support import run_cli

    def building():
        raise KeyboardInterrupt
    assert run_cli("prog", building, [], lambda args: 0) == 130
    assert "interrupted while starting" in capsys.readouterr().err


def test_overwrite_that_stops_after_writing_resumable_work_keeps_both(tmp_path):
    """A new run interrupted after its first checkpoint is work to continue, not to throw away: it stays, and the
    earlier results wait in .replaced/ for the user."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt").write_text("old")
    replaced = ReplaceOnSuccess(out, ("checkpoint.pt",), resumable=lambda o: (o / "checkpoint.pt").exists())
    with pytest.raises(KeyboardInterrupt):
        with replaced:
            (out / "checkpoint.pt").write_text("new, epoch 40")
            raise KeyboardInterrupt
    assert replaced.outcome == "kept"
    assert (out / "checkpoint.pt").read_text() == "new, epoch 40"
    assert (out / ReplaceOnSuccess.ASIDE / "checkpoint.pt").read_text() == "old"


def test_lock_is_held_by_a_flock_and_a_stray_rank_is_no_group(tmp_path, monkeypatch):
    import multiprocessing

    from mi_toolkit.cli_support import LOCK, FolderLock, check_not_in_use, launched_rank
    monkeypatch.setenv("RANK", "3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_rank() == 0                 # RANK alone (a cluster launcher's) is no torchrun group
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_rank() == 3
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    with FolderLock(tmp_path / "f"):
        (tmp_path / "f" / LOCK).write_text("")   # even with its text gone, the flock still says who writes
        with pytest.raises(ArgumentError, match="another run is writing"):
            check_not_in_use(tmp_path / "f")
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        child = ctx.Process(target=_try_lock, args=(tmp_path / "f", q))
        child.start()
        child.join(20)
        assert "another run is writing" in q.get(timeout=5)
    check_not_in_use(tmp_path / "f")            # released


def _try_lock(folder, q):
    from mi_toolkit.cli_support import FolderLock
    try:
        with FolderLock(folder):
            q.put("got it")
    except Exception as err:   # noqa: BLE001 -- reported to the parent
        q.put(str(err))

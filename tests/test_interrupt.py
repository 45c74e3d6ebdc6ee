"""Ctrl-C (SIGINT) in the middle of ``mi-toolkit bench`` and ``superinfo train``: what finished is on disk, the
message says how to continue, and the documented resume continues from it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fixtures_state import tiny_train_argv
from superinfo.cli import main as superinfo_main
from superinfo.trainer.run import checkpoint_epoch
from synthetic.cli import main as bench_main

pytestmark = pytest.mark.slow          # child processes, interrupted mid-run


def _default_sigint():
    # an ignored SIGINT survives exec (a test before this one, or a launcher, may leave it ignored in pytest), and
    # Python then installs no KeyboardInterrupt handler: give the child the disposition a shell gives a command
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _interrupt_when(proc, ready, timeout=120.0):
    """SIGINT as soon as ``ready()``; returns (status, stdout, stderr)."""
    start = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"finished before it could be interrupted (status {proc.returncode}):\n{err}")
        if time.monotonic() - start > timeout:
            proc.kill()
            pytest.fail("never got ready")
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


# enough steps that the two estimators after the first outlast the SIGINT's delivery on a loaded machine
BENCH = ["--dim", "2", "--mi", "1", "--batch-size", "8", "--steps-per-level", "2000", "--window", "100",
         "--estimators", "infonce,smile,nwj", "--no-progress", "--threads", "1"]


def test_ctrl_c_in_bench_keeps_finished_estimators_and_resume_completes(tmp_path, capsys):
    out = tmp_path / "bench"
    proc = _start(["synthetic.cli", "bench", *BENCH, "--out", str(out)], tmp_path)
    status, _, err = _interrupt_when(proc, lambda: (out / "estimators" / "infonce.json").exists())
    assert status == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    kept = sorted(p.stem for p in (out / "estimators").glob("*.json"))
    assert "infonce" in kept and len(kept) < 3, kept
    kept_trace = np.load(out / "estimators" / "infonce.npy")

    # the documented resume: the same command plus --resume
    assert bench_main(["bench", *BENCH, "--out", str(out), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    assert sorted({r["estimator"] for r in records}) == ["infonce", "nwj", "smile"]
    assert np.array_equal(np.load(out / "traces.npz")["infonce"], kept_trace)      # kept, not recomputed


def test_ctrl_c_in_train_keeps_the_last_epoch_and_resume_continues(tmp_path, capsys):
    run = tmp_path / "run"
    # 1000 epochs: the run must still be going when the SIGINT lands (it is interrupted after its first checkpoint)
    proc = _start(["superinfo", *tiny_train_argv(run, epochs=1000, max_steps_per_epoch=4)], tmp_path)
    status, _, err = _interrupt_when(proc, lambda: (run / "checkpoint.pt").exists())
    assert status == 130, err
    assert f"superinfo train --resume {run}" in err and "Traceback" not in err
    epoch = checkpoint_epoch(run / "checkpoint.pt")
    assert 1 <= epoch < 1000

    # the documented resume continues from that epoch (one more epoch here, to keep the test short)
    assert superinfo_main(["train", "--resume", str(run), "--stop-after-epochs", "1", "--threads", "1",
                           "--no-progress"]) == 0
    assert checkpoint_epoch(run / "checkpoint.pt") == epoch + 1
    steps = [int(line.split(",")[1]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and len(steps) == len(set(steps))       # continued, no rows repeated
    assert steps[-1] == (epoch + 1) * 4

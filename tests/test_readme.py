"""Every code block of README.md runs as written, in order, on tiny settings.

The only changes are listed below, in the open: placeholders (DIR, RUN_DIR, ...) become folders of this test, data
folders are filled with small files in the official on-disk formats, and TINY swaps the long settings for documented
short ones (fewer steps, epochs, seeds).  A README command that is not ``mi-toolkit``, ``superinfo``, ``./dev``,
``torchrun`` or ``python -m superinfo`` fails the test, so a new block cannot be skipped silently.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_data import write_cifar10, write_imagefolder
from fixtures_state import TINY_RUN_FLAGS
from fixtures_transfer import write_all

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow          # every README command, end to end

# README text -> what runs instead (exact substrings, applied in this order to every command or Python block)
TINY = [
    # Python blocks
    ("task.sample(4_000)", "task.sample(2_000)"),
    ("steps=500", "steps=20"),
    # ./dev: a tiny bench, and one test file (the whole suite would run this test again)
    ("./dev bench", "./dev bench --dim 2 --mi 2 --steps-per-level 20 --window 10 --estimators infonce "
                    "--no-progress --out {tmp}/dev-bench"),
    ("./dev test", "./dev test tests/test_validation.py -q -p no:cacheprovider"),
    # the bias benchmark: every estimator, 10 steps a level
    ("--dim 20 --mi 2,4,6,8,10 --batch-size 64 --steps-per-level 2000", "--dim 2 --mi 2,4 --batch-size 16 "
                                                                         "--steps-per-level 10 --window 5"),
    # the world: 20 steps, fewer lambdas and seeds
    ("--lambdas 0,0.01,0.03,0.1,0.3,1 --bounds kl,club --seeds 0,1,2", "--lambdas 0,1 --bounds kl,club --seeds 0"),
    # the image commands
    ("--lambda-a 0,0.01,0.03,0.1,auto --seeds 0,1,2", "--lambda-a 0 --seeds 0"),
    ("--datasets dtd,mnist,fashionmnist,flowers102,gtsrb,cifar10,cifar100", "--datasets dtd,mnist,gtsrb"),
    # torchrun: 2 CPU processes on digits instead of 8 GPUs on ImageNet; one node, on this machine
    ("--nproc_per_node=8", "--nproc_per_node=2"),
    ("--nnodes=2", "--nnodes=1"),
    ("--preset imagenet --data-root /data/imagenet", "--preset digits"),
    ("--preset imagenet --data-root /shared/imagenet", "--preset digits"),
]
# flags appended to a command that starts with the key (documented options; the last value given wins)
TINY_RUN = " ".join(TINY_RUN_FLAGS)     # the tests' shared tiny run: --epochs 1 --max-steps-per-epoch 1 --arch tiny ...
APPEND = {
    "superinfo world": "--steps 20 --probe-samples 200",
    "superinfo sweep-world": "--steps 20 --probe-samples 200",
    "superinfo demo": "--seeds 0 --epochs 1 --max-steps-per-epoch 1 --width 4",
    "superinfo train --preset digits": TINY_RUN,
    "superinfo train --preset cifar10": "--no-verify --epochs 1 --max-steps-per-epoch 1 --batch-size 8 "
                                        "--final-eval none",
    "superinfo train --dataset imagefolder": "--epochs 1 --max-steps-per-epoch 1 --arch tiny --width 4 "
                                            "--image-size 16 --batch-size 8 --num-workers 0 --final-eval none",
    "superinfo eval": "--threads 1",
    "superinfo probe": "--images 100 --steps 50 --batch-size 8 --threads 1",
    "superinfo sweep": f"{TINY_RUN} --no-progress",
    "superinfo transfer": "--no-verify --epochs 1 --no-progress --threads 1",
    "torchrun": f"{TINY_RUN} --no-sync-bn --no-progress --threads 1",
}
PLACEHOLDERS = ["WORLD_DIR", "AUTO_DIR", "ENT_DIR", "SWEEP_DIR", "ABLATION_DIR", "IMAGENET_RUN", "DEMO_DIR", "DIGITS_RUN", "DATA_DIR", "RUN_DIR",
                "SIMCLR_RUN", "IMAGES_DIR", "IMAGES_RUN", "TRANSFER_DIR", "FILE", "DIR"]


def blocks():
    return re.findall(r"```(python|bash)\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[str]:
    """Shell lines with continuations joined and comments dropped."""
    text = block.replace("\\\n", " ")
    lines = [re.sub(r"\s#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def sub(text: str, old: str, new: str) -> str:
    """``text`` with every ``old`` replaced by ``new``; ``old`` must be there, so that a README edit cannot disable a
    substitution without failing this test."""
    assert old in text, f"README.md no longer holds {old!r}: update this test's substitution"
    return text.replace(old, new)


def tiny_blocks(tmp: Path) -> list[tuple[str, str | list[str]]]:
    """Every README block as it runs here: ("python", code) or ("bash", [command, ...]).  Each substitution must match
    somewhere in the README (``sub``), each APPEND key must start a command and each placeholder must be used."""
    kinds, texts = zip(*[(kind, block if kind == "python" else "\n".join(commands(block))) for kind, block in blocks()])
    whole = "\0".join(texts)               # one text, so that each substitution is checked against the whole README
    for old, new in TINY:
        whole = sub(whole, old, new)
    whole = sub(whole, "/shared/IMAGENET_RUN", str(tmp / "imagenet_run_two_nodes"))
    whole = sub(whole, "HOST:29500", f"127.0.0.1:{_free_port()}")
    whole = sub(whole, "--rdzv_id=JOB", "--rdzv_id=readme")
    appended, placed, result = set(), set(), []
    for block, (kind, text) in enumerate(zip(kinds, whole.split("\0"))):
        pieces = [text] if kind == "python" else text.splitlines()
        for i, piece in enumerate(pieces):
            for key, flags in APPEND.items():
                if kind == "bash" and piece.startswith(key + " "):
                    piece = f"{piece} {flags}"
                    appended.add(key)
            for name in PLACEHOLDERS:      # DIR is "a folder of your choice": one per block
                folder = tmp / (f"dir{block}" if name == "DIR" else name.lower())
                piece, count = re.subn(rf"\b{name}\b", str(folder), piece)
                placed.update([name] if count else [])
            pieces[i] = piece.replace("{tmp}", str(tmp))
        result.append((kind, pieces[0] if kind == "python" else pieces))
    assert appended == set(APPEND), f"no README command starts with {sorted(set(APPEND) - appended)}"
    assert placed == set(PLACEHOLDERS), f"README.md no longer uses {sorted(set(PLACEHOLDERS) - placed)}"
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_shell(line: str, tmp: Path) -> None:
    from superinfo.cli import main as superinfo_main
    from synthetic.cli import main as mi_toolkit_main

    argv = shlex.split(line)
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{BIN}:{os.environ['PATH']}")
    if argv[0] == "mi-toolkit":
        assert mi_toolkit_main(argv[1:]) == 0, line
    elif argv[0] == "superinfo":
        assert superinfo_main(argv[1:]) == 0, line
    elif argv[0] == "./dev" or argv[0] == "torchrun":
        argv = [str(ROOT / "dev") if argv[0] == "./dev" else str(BIN / "torchrun"), *argv[1:]]
        done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    else:
        pytest.fail(f"README command this test does not know how to run: {line}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    write_cifar10(tmp / "data_dir")
    write_imagefolder(tmp / "images_dir", per_class=4, splits=("train", "val", "test"))
    write_all(tmp / "transfer_dir")
    return tmp


def test_readme_has_the_blocks_this_test_knows(tmp_path):
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 2 and kinds.count("bash") >= 5
    tiny_blocks(tmp_path)                   # every substitution still matches (runs nothing)


def test_every_readme_block_runs(data, monkeypatch):
    monkeypatch.chdir(data)
    for kind, block in tiny_blocks(data):
        if kind == "python":
            exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
        else:
            for line in block:
                start = time.perf_counter()
                run_shell(line, data)
                if os.environ.get("README_TIMES"):       # README_TIMES=1: how long each command takes
                    print(f"[readme] {time.perf_counter() - start:6.1f} s  {line[:90]}", file=sys.__stderr__)
    # what the blocks promise is there
    assert (data / "world_dir" / "world.json").exists() and (data / "sweep_dir" / "sweep.json").exists()
    assert (data / "ablation_dir" / "sweep.csv").exists() and (data / "imagenet_run" / "checkpoint.pt").exists()
    assert (data / "demo_dir" / "eval.json").exists() and (data / "run_dir" / "eval.json").exists()
    assert (data / "file").exists() and (data / "file.json").exists()
    assert (data / "run_dir" / "transfer.json").exists()

"""One source of truth: every setting is declared once (its field), and the parsers, the range check and the resume
rule are generated from it.  These tests fail when a field is added without a flag, help, a range or choices, or
when a parser or a rule stops following the fields."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from mi_toolkit.errors import ArgumentError
from mi_toolkit.settings import INT1, Range, check_settings, flag_of, flags_of, setting, settings_of
from superinfo.cli import build_parser
from superinfo.trainer.config import RESUME_OVERRIDABLE, TrainConfig
from superinfo.world import DEFAULTS, WorldConfig

# fields no command line sets, each with its reason
NO_FLAG = {"extra": "SuperInfoLoss keyword arguments: Python API only"}
# TrainConfig fields the sweep command takes otherwise: its grid axes are comma lists of their own, it names each
# run folder itself, its --no-progress is its own, and a sweep runs in one process
NOT_SWEEP_OVERRIDES = {"lambda_a", "lambda_b", "epochs", "seed", "out", "progress", "sync_bn"}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _flags_by_dest(p: argparse.ArgumentParser) -> dict:
    out: dict = {}
    for action in p._actions:
        for flag in action.option_strings:
            out.setdefault(action.dest, []).append((flag, action))
    return out


@pytest.mark.parametrize("cls", [TrainConfig, WorldConfig])
def test_every_field_declares_help_and_a_range_or_choices(cls):
    declared = {f.name for f, _ in settings_of(cls)}
    assert declared == {f.name for f in dataclasses.fields(cls)}, "a field without setting(...)"
    for f, s in settings_of(cls):
        assert s.help.strip(), f.name
        base = f.type.split("|")[0].strip()
        described = s.range is not None or s.valid_choices() is not None or s.check is not None or s.path \
            or base == "bool" or not s.cli
        assert described, f"{cls.__name__}.{f.name} has neither a range nor choices nor a check"


@pytest.mark.parametrize("command, cls, skip", [
    ("train", TrainConfig, set(NO_FLAG)),
    ("sweep", TrainConfig, set(NO_FLAG) | NOT_SWEEP_OVERRIDES),
    ("world", WorldConfig, set()),
    ("sweep-world", WorldConfig, set()),
])
def test_every_field_has_exactly_one_flag_with_help(command, cls, skip):
    flags = _flags_by_dest(_subparser(command))
    for f, s in settings_of(cls):
        if f.name in skip:
            continue
        assert f.name in flags, f"{command}: {f.name} has no flag"
        given = [flag for flag, _ in flags[f.name]]
        assert given == flags_of(f, s) and len(given) == (2 if s.bool_flags == "on_off" else 1), \
            f"{command}: {f.name} has flags {given}"
        assert all(a.help for _, a in flags[f.name]), f"{command}: {f.name} has a flag without help"


def test_the_sweep_grids_exactly_the_fields_marked_as_grid_axes():
    grid = {f.name: s.grid for f, s in settings_of(TrainConfig) if s.grid}
    assert grid == {"lambda_a": "--lambda-a", "lambda_b": "--lambda-b", "epochs": "--epochs", "seed": "--seeds"}
    flags = _flags_by_dest(_subparser("sweep"))
    for name, flag in grid.items():
        assert [f for f, _ in flags[f"grid_{name}"]] == [flag]


def test_a_flag_checks_the_fields_own_range_while_parsing(capsys):
    parser = build_parser()
    for f, s in settings_of(TrainConfig):
        if not s.cli or s.range is None or s.range.low is None:
            continue
        below = s.range.low if s.range.low_open else s.range.low - 1
        with pytest.raises(SystemExit):
            parser.parse_args(["train", flag_of(f, s), str(below if s.range.kind is float else int(below))])
        assert flag_of(f, s) in capsys.readouterr().err, f.name
        with pytest.raises(ArgumentError, match=f.name):      # and the config itself (the Python API)
            check_settings(dataclasses.replace(TrainConfig(), **{f.name: below}))


def test_resume_refuses_exactly_the_fields_marked_fixed(tmp_path):
    from superinfo.trainer.loop import resume
    from superinfo.trainer.run import CHECKPOINT, write_config

    run = tmp_path / "run"
    run.mkdir()
    write_config(run, TrainConfig(out=str(run)))
    (run / CHECKPOINT).write_bytes(b"")      # resume() refuses settings before it reads the checkpoint
    marked = {f.name for f, s in settings_of(TrainConfig) if s.resume}
    assert set(RESUME_OVERRIDABLE) == marked
    sample = {int: 3, float: 0.5, bool: True, str: "x"}
    for f, s in settings_of(TrainConfig):
        if f.name in marked or not s.cli:
            continue
        value = next(iter(s.valid_choices())) if s.valid_choices() else sample[_kind(f, s)]
        with pytest.raises(ArgumentError, match=f"cannot change {f.name} when resuming"):
            resume(run, **{f.name: value})


def _kind(f, s):
    if s.range is not None:
        return s.range.kind
    return {"int": int, "float": float, "bool": bool}.get(f.type.split("|")[0].strip(), str)


def test_world_defaults_are_the_fields():
    assert DEFAULTS == dataclasses.asdict(WorldConfig())
    world = _subparser("world")
    assert all(world.get_default(k) == v for k, v in DEFAULTS.items())


def test_settings_mechanism_on_a_new_dataclass():
    """The mechanism itself, on a config of its own: the example a new setting follows."""
    @dataclasses.dataclass
    class Config:
        steps: int = setting(10, "training steps", range=INT1, resume=True)
        mode: str = setting("a", "a mode", choices=("a", "b"))
        rate: float | str = setting(0.5, "a rate or 'auto'", range=Range(float, 0, 1), special=("auto",))
        verify: bool = setting(True, "skip the checks", bool_flags="off")

    from mi_toolkit.settings import add_arguments
    p = argparse.ArgumentParser()
    assert add_arguments(p, Config) == ["steps", "mode", "rate", "verify"]
    args = p.parse_args(["--steps", "3", "--mode", "b", "--rate", "auto", "--no-verify"])
    assert (args.steps, args.mode, args.rate, args.verify) == (3, "b", "auto", False)
    assert p.parse_args([]).steps is None        # not given: the caller's default (a preset) decides
    for bad in (["--steps", "0"], ["--mode", "c"], ["--rate", "2"], ["--rate", "nan"], ["--steps", "1.5"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)
    check_settings(Config())
    for field, value, match in (("steps", 0, "steps must be an integer >= 1"), ("mode", "c", "unknown mode 'c'"),
                                ("rate", "fast", "rate must be a number"), ("steps", True, "steps must be"),
                                ("verify", "yes", "verify must be True or False")):
        with pytest.raises(ArgumentError, match=match):
            check_settings(dataclasses.replace(Config(), **{field: value}))

"""Settings declared once.  A dataclass field made with ``setting(...)`` carries its help text, its range or
choices, how its command-line flag looks, whether a resumed run may change it and whether a sweep may grid it;
the command-line parsers (``add_arguments``) and the one range check (``check_settings``) are generated from it.

    @dataclass
    class Config:
        steps: int = setting(1000, "training steps", range=INT1)
        bound: str = setting("kl", "upper bound", choices=("kl", "club"))
        verify: bool = setting(True, "skip the md5 checks", bool_flags="off")     # --no-verify

    check_settings(Config(steps=0))      # ArgumentError: steps must be an integer >= 1, got 0
    add_arguments(parser, Config)        # --steps (integer >= 1, checked while parsing), --bound {kl,club}, ...

``Range`` is also what ``cli_support.int_arg`` / ``float_arg`` check with: one range checker for both commands.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, Optional

from .errors import ArgumentError

__all__ = ["FINITE", "INT0", "INT1", "NONNEGATIVE", "POSITIVE", "Range", "Setting", "add_arguments", "arguments_of",
           "add_grid_arguments", "check_settings", "field_parser", "flag_of", "flags_of", "parse_bool", "setting", "settings_of",
           "split_items", "value_parser"]


# ------------------------------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Range:
    """An interval of ints or finite floats; ``low_open``: strictly above ``low``."""

    kind: type = float
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        parts = ([f"{'>' if self.low_open else '>='} {self.low:g}"] if self.low is not None else []) + \
                ([f"{'<' if self.high_open else '<='} {self.high:g}"] if self.high is not None else [])
        return f"{what} {' and '.join(parts)}".strip() if parts else f"a finite {what.split()[-1]}"

    def problem(self, value) -> Optional[str]:
        """None when ``value`` is in range, else what it must be."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                (self.kind is int and not isinstance(value, numbers.Integral)):
            return f"must be {self.describe()}"
        if not math.isfinite(value):
            return f"must be {self.describe()} (finite)"
        low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return f"must be {self.describe()}" if low or high else None

    def check(self, value, name: str):
        why = self.problem(value)
        if why is not None:
            raise ArgumentError(f"{name} {why}, got {value!r}")
        return value

    def parse(self, text: str):
        """Text to a value in range, for argparse (``ArgumentTypeError``: argparse names the flag)."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None
        why = self.problem(value)
        if why is not None:
            raise argparse.ArgumentTypeError(f"{why}, got {text!r}")
        return value


INT1, INT0 = Range(int, 1), Range(int, 0)
POSITIVE, NONNEGATIVE, FINITE = Range(float, 0, low_open=True), Range(float, 0), Range(float)


def split_items(text: str) -> list[str]:
    """A comma list's items (one trailing comma is harmless; an empty item is an error)."""
    items = [v.strip() for v in text.split(",")]
    if len(items) > 1 and items[-1] == "":
        items.pop()
    if not items or any(v == "" for v in items):
        raise argparse.ArgumentTypeError(f"expected a comma list with no empty items, got {text!r}")
    return items


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


# ------------------------------------------------------------------------------------------------- the field
@dataclass(frozen=True)
class Setting:
    """What a field says about itself (``dataclasses.field(metadata={"setting": Setting(...)})``).

    ``special``: words accepted beside numbers (``auto``, ``learned``); ``check``: a callable for values neither a
    range nor choices can describe (a device name), raising ``ArgumentError``; ``bool_flags``: ``value``
    (``--flag true|false``), ``bare`` (that, or ``--flag`` alone), ``on`` (``--flag``), ``off`` (``--no-flag``) or
    ``on_off`` (both); ``resume``: a resumed run may change it; ``grid``: the flag of the sweep's comma list over
    it (None: not a grid axis); ``cli``: False for what no command line sets."""

    help: str
    range: Optional[Range] = None
    choices: Any = None             # a tuple, or a callable returning one (registries filled at import time)
    special: tuple = ()
    check: Optional[Callable] = None
    flag: Optional[str] = None
    bool_flags: Optional[str] = None
    resume: bool = False
    grid: Optional[str] = None
    cli: bool = True
    path: bool = False              # a file or folder name: no range; the command checks it on disk, not this module
    open_choices: bool = False      # the choices bind the command line only (the API takes other names too)
    cli_range: Optional[Range] = None   # a stricter range for the command line (the API takes the wider one)

    def valid_choices(self) -> Optional[tuple]:
        return tuple(self.choices()) if callable(self.choices) else self.choices


def setting(default=MISSING, help: str = "", *, default_factory=MISSING, **what) -> Any:
    """A dataclass field that carries its ``Setting`` (see there for the keywords)."""
    meta = {"setting": Setting(help=help, **what)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def settings_of(cls) -> list[tuple[dataclasses.Field, Setting]]:
    """Every (field, Setting) of a dataclass, in declaration order (fields without one are skipped)."""
    return [(f, f.metadata["setting"]) for f in dataclasses.fields(cls) if "setting" in f.metadata]


def _base_type(f: dataclasses.Field, s: Setting) -> type:
    """int, float, str or bool: from the range, else the annotation's first type (``int | None`` -> int)."""
    if s.range is not None:
        return s.range.kind
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    first = annotation.replace("Optional[", "").replace("]", "").split("|")[0].strip()
    return {"int": int, "float": float, "bool": bool}.get(first, str)


def check_settings(obj) -> None:
    """Each field's own rule (range, choices, special words, check); ``None`` means "derive" and always passes."""
    for f, s in settings_of(type(obj)):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if isinstance(value, str) and value in s.special:
            continue
        choices = None if s.open_choices else s.valid_choices()
        if choices is not None:
            if value not in choices:
                raise ArgumentError(f"unknown {f.name} {value!r}; valid: {', '.join(map(str, choices))}")
        elif s.range is not None:
            if isinstance(value, str):
                words = f" or {', '.join(map(repr, s.special))}" if s.special else ""
                raise ArgumentError(f"{f.name} must be {s.range.describe()}{words}, got {value!r}")
            s.range.check(value, f.name)
        elif _base_type(f, s) is bool and not isinstance(value, bool):
            raise ArgumentError(f"{f.name} must be True or False, got {value!r}")
        if s.check is not None:
            s.check(value, f.name)


# ------------------------------------------------------------------------------------------------- parsers
def flag_of(f: dataclasses.Field, s: Setting) -> str:
    return s.flag or "--" + f.name.replace("_", "-")


def value_parser(f: dataclasses.Field, s: Setting, *, as_list: bool = False) -> Callable[[str], Any]:
    """An argparse ``type=`` for one field: its special words, choices and range checked while parsing."""
    kind = _base_type(f, s)
    choices = s.valid_choices
    span = s.cli_range or s.range

    def one(text: str):
        text = text.strip()
        if text in s.special:
            return text
        if kind is bool:
            return parse_bool(text)
        if span is not None:
            return span.parse(text)
        valid = choices()
        if valid is not None and text not in valid:
            raise argparse.ArgumentTypeError(f"unknown {text!r}; valid: {', '.join(valid)}")
        return text

    def checked(text: str):
        value = one(text)
        if s.check is not None and value not in s.special:
            try:
                s.check(value, "the value")
            except ArgumentError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        return value

    def parse(text: str):
        return [checked(v) for v in split_items(text)] if as_list else checked(text)
    parse.__name__ = ("list of " if as_list else "") + (span.describe() if span is not None else kind.__name__)
    return parse


def _field_default(f: dataclasses.Field):
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def arguments_of(f: dataclasses.Field, s: Setting, *, defaults: bool = False) -> list[tuple[tuple, dict]]:
    """The ``add_argument`` calls (args, kwargs) of one field.  ``defaults=False``: every default is None ("not
    given": a preset fills it in); True: the field's own default (shown by ``--help``)."""
    flag = flag_of(f, s)
    default = _field_default(f) if defaults else None
    bare = flag[2:]
    if _base_type(f, s) is bool and s.bool_flags in ("on", "off", "on_off"):
        calls = []
        if s.bool_flags in ("on", "on_off"):
            calls.append(((flag,), dict(dest=f.name, action="store_true", default=default, help=s.help)))
        if s.bool_flags in ("off", "on_off"):
            off = f"--no-{bare}"
            calls.append(((off,), dict(dest=f.name, action="store_false", default=default,
                                       help=s.help if s.bool_flags == "off" else f"not {flag}")))
        return calls
    choices = s.valid_choices()
    words = "|".join(s.special)
    if choices is not None:       # the names in the usage line; each is checked while parsing
        metavar = "{" + ",".join(map(str, choices)) + "}"
    elif s.range is not None:
        metavar = ("NUMBER" if s.range.kind is float else "INT") + (f"|{words}" if words else "")
    else:
        metavar = f.name.upper()
    span = s.cli_range or s.range
    text = s.help + (f" [{span.describe()}]" if span is not None and span.low is not None else "")
    kw = dict(dest=f.name, type=value_parser(f, s), default=default, help=text, metavar=metavar)
    if s.bool_flags == "bare":
        kw.update(nargs="?", const=True)
    return [((flag,), kw)]


def flags_of(f: dataclasses.Field, s: Setting) -> list[str]:
    """The command-line flags of one field (one, or ``--x`` and ``--no-x`` for an on/off switch)."""
    return [args[0] for args, _ in arguments_of(f, s)]


def add_arguments(parser, cls, *, include: Optional[Callable[[dataclasses.Field, Setting], bool]] = None,
                  defaults: bool = False) -> list:
    """One flag per field of ``cls`` (those with ``cli`` and, if given, ``include(field, setting)``); returns the
    destinations added.  ``defaults``: see ``arguments_of``."""
    dests = []
    for f, s in settings_of(cls):
        if not s.cli or (include is not None and not include(f, s)):
            continue
        for args, kw in arguments_of(f, s, defaults=defaults):
            parser.add_argument(*args, **kw)
        dests.append(f.name)
    return dests


def field_parser(cls, name: str, *, as_list: bool = False) -> Callable[[str], Any]:
    """The argparse ``type=`` of field ``name`` of ``cls`` (for a flag of another command that takes the same
    kind of value, e.g. a demo's lambda)."""
    for f, s in settings_of(cls):
        if f.name == name:
            return value_parser(f, s, as_list=as_list)
    raise KeyError(name)


def add_grid_arguments(parser, cls, *, required: tuple = ()) -> dict:
    """The sweep's comma lists: one per field with a ``grid`` flag (dest ``grid_<name>``); returns {field: dest}."""
    dests = {}
    for f, s in settings_of(cls):
        if s.grid is None:
            continue
        dest = f"grid_{f.name}"
        parser.add_argument(s.grid, dest=dest, type=value_parser(f, s, as_list=True), default=None,
                            required=f.name in required, help=f"comma list: {s.help}")
        dests[f.name] = dest
    return dests

"""The errors a user's input causes, as opposed to a bug: the command-line tools print these as one ``error: ...``
line (exit status 2) and let every other exception show its traceback.

They subclass ``ValueError`` / ``TypeError``, so ``except ValueError`` in user code keeps working."""
from __future__ import annotations

__all__ = ["ArgumentError", "ArgumentTypeError", "UserError"]


class UserError(Exception):
    """Base of every error caused by what the user asked for (an argument, a file, a run folder)."""


class ArgumentError(UserError, ValueError):
    """An argument is out of range, malformed or inconsistent with another; the message names it."""


class ArgumentTypeError(UserError, TypeError):
    """An argument has the wrong type; the message names it."""

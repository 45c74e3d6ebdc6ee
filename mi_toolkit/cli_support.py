"""What both command-line tools (``mi-toolkit``, ``superinfo``) share: argument types that check ranges while argparse
parses (so argparse names the flag; the ranges are ``mi_toolkit.settings.Range``), checks of input files and output
paths that run before any compute and create nothing, ``ReplaceOnSuccess`` (``--overwrite`` that replaces earlier
results only once the new ones exist), a help formatter that shows every default, and ``run_cli``: the one error
path.

The error path: a user error (``mi_toolkit.errors.UserError``: a bad argument, a missing or corrupt file, a run
folder that cannot be used) prints ``PROG CMD: error: ...`` on stderr and exits 2, never a traceback (``--debug``
anywhere on the command line shows it); Ctrl-C prints what was kept and how to resume, and exits 130.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import sys
from pathlib import Path

from .errors import ArgumentError, UserError
from .settings import Range, split_items

__all__ = ["HelpFormatter", "add_version", "float_arg", "float_list", "int_arg", "int_list", "name_list",
           "FolderLock", "ReplaceOnSuccess", "check_input_file", "check_not_in_use", "launched_rank", "check_input_dir", "check_output_dir", "check_output_file",
           "created_dir_guard",
           "progress_default", "resolve_threads", "run_cli"]


# ------------------------------------------------------------------------------------------------- help text
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends ``(default: X)`` to every option that has a meaningful
    default (not None/False, and not already stated in its help)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower():
            return text
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS \
                or not action.option_strings:
            return text
        if isinstance(action.default, (list, tuple)):
            return text + f" (default: {','.join(str(v) for v in action.default)})"
        return text + " (default: %(default)s)"


def add_version(parser: argparse.ArgumentParser) -> None:
    from . import __version__ as v
    parser.add_argument("--version", action="version", version=f"%(prog)s {v}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (may be given anywhere on the command line)")


# ------------------------------------------------------------------------------------------- argument types
# Every range is a ``mi_toolkit.settings.Range`` and every comma list is split by ``settings.split_items``: the
# flags generated from settings and these hand-made ones check alike.
def int_arg(minimum: int | None = None, maximum: int | None = None):
    """An argparse ``type=``: an integer within [minimum, maximum]."""
    return Range(int, minimum, maximum).parse


def float_arg(minimum: float | None = None, maximum: float | None = None, *, min_open: bool = False,
              max_open: bool = False):
    """An argparse ``type=``: a finite number within the bounds (``min_open``: strictly above ``minimum``)."""
    return Range(float, minimum, maximum, min_open, max_open).parse


def _list_of(one, name: str):
    def parse(text: str) -> list:
        return [one(v) for v in split_items(text)]
    parse.__name__ = name
    return parse


def float_list(minimum: float | None = None, maximum: float | None = None, *, min_open: bool = False):
    """An argparse ``type=``: a comma list of finite numbers, each within the bounds; no empty items (``0,,1``)."""
    return _list_of(float_arg(minimum, maximum, min_open=min_open), "number list")


def int_list(minimum: int | None = None, maximum: int | None = None):
    return _list_of(int_arg(minimum, maximum), "integer list")


def name_list(choices=None, what: str = "names"):
    """A comma list of names, each one of ``choices`` (a sequence, or a callable returning one) when given."""
    def parse(text: str) -> list[str]:
        names = split_items(text)
        valid = choices() if callable(choices) else choices
        if valid is not None:
            bad = [n for n in names if n not in valid]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, bad))}; valid {what}: "
                                                 f"{', '.join(valid)}")
        return names
    parse.__name__ = "name list"
    return parse


# ----------------------------------------------------------------------------------------------- paths
def check_input_file(path, flag: str) -> Path:
    """An existing, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise ArgumentError(f"{flag} {path}: no such file")
    if p.is_dir():
        raise ArgumentError(f"{flag} {path}: is a folder, expected a file")
    if not os.access(p, os.R_OK):
        raise ArgumentError(f"{flag} {path}: not readable (permission denied)")
    return p


def check_input_dir(path, flag: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise ArgumentError(f"{flag} {path}: no such folder")
    if not p.is_dir():
        raise ArgumentError(f"{flag} {path}: is a file, expected a folder")
    if not os.access(p, os.R_OK | os.X_OK):
        raise ArgumentError(f"{flag} {path}: not readable (permission denied)")
    return p


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    return p


def _check_creatable(p: Path, flag: str, path) -> None:
    """``p`` (which does not exist) can be created: its nearest existing ancestor is a folder a file can really be
    written in (permission bits do not tell a read-only mount or a virtual file system like /proc).  The probe is a
    temporary file there, removed at once; no folder is created, so commands started together do not race."""
    base = _nearest_existing(p)
    if not base.is_dir():
        raise ArgumentError(f"{flag} {path}: cannot be created, {base} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ArgumentError(f"{flag} {path}: cannot be created, {base} is not writable")
    _probe_write(base, flag, path, what="cannot be created: ")


def _probe_write(folder: Path, flag: str, path, what: str = "") -> None:
    """A file can be written in ``folder``: one is created and removed."""
    import tempfile
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as err:
        raise ArgumentError(f"{flag} {path}: {what}cannot write in {folder} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(name)


def _listing(names, limit: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_dir(path, flag: str = "--out", *, overwrite: bool = False, resumable: str | None = None,
                     known=()) -> Path:
    """A folder results may go to, checked before any compute, creating nothing: it does not exist (and could be
    created) or is empty, or ``overwrite`` is set; ``resumable`` names the command that continues an existing
    one (the error suggests it); ``known``: glob patterns of what the command writes there, so the error tells the
    command's earlier results from files of the user's that --overwrite would leave alone."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ArgumentError(f"{flag} {path}: is a file, expected a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ArgumentError(f"{flag} {path}: the folder is not writable")
        _probe_write(p, flag, path)
        entries = [e.name for e in p.iterdir() if e.name != LOCK]
        if entries and not overwrite:
            ours = [n for n in entries if any(fnmatch.fnmatch(n, k) for k in known)]
            others = [n for n in entries if n not in ours]
            hint = f"{resumable}, " if resumable else ""
            if ours:
                what = f"already holds results ({_listing(ours)})"
                if others:
                    what += f" and other files ({_listing(others)}; --overwrite leaves those alone)"
                raise ArgumentError(f"{flag} {path}: the folder {what}; {hint}pick another {flag}, or pass "
                                    "--overwrite to replace them")
            raise ArgumentError(f"{flag} {path}: the folder is not empty: it holds {_listing(others)}, which are not "
                                f"results of this command; pick another {flag} (an empty or new folder), or pass "
                                "--overwrite to write beside them")
    else:
        _check_creatable(p, flag, path)
    return p


LOCK = ".lock"      # a live writer's pid and host, in the folder it writes


def _lock_holder(text: str) -> str | None:
    """Who a lock file's text names: "process PID on HOST" while that process lives, None when it names nobody or a
    process that died without removing it."""
    try:
        pid_text, host = text.split("\n")[:2]
        pid = int(pid_text)
    except ValueError:
        return None
    if host != _host():
        return f"process {pid} on {host}"       # cannot see another machine's processes: assume it lives
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:     # alive, someone else's
        pass
    return f"process {pid} on {host}"


def _host() -> str:
    import socket
    return socket.gethostname()


def _flocked(fd: int, kind) -> bool:
    """Whether this process now holds ``kind`` (fcntl.LOCK_EX / LOCK_SH) on ``fd`` (no wait)."""
    import fcntl
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _read_fd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace")


def _busy(flag: str, folder, holder: str | None) -> ArgumentError:
    return ArgumentError(f"{flag} {folder}: another run is writing there ({holder or 'another process'}); wait for "
                         f"it, or pick another {flag}")


def launched_rank() -> int:
    """This process's rank in a torchrun group of more than one process (RANK, WORLD_SIZE), else 0: rank 0 alone
    locks and replaces a run folder for the whole group.  A RANK without a WORLD_SIZE above 1 (some cluster
    launchers export one for every job) is no group."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def check_not_in_use(folder, flag: str = "--out") -> None:
    """Refuses a folder another live process is writing (it holds the lock file's flock, or the file names a
    process that lives); a stale lock is ignored.  The other ranks of a torchrun group skip it: rank 0's lock is
    theirs."""
    import fcntl
    if launched_rank() != 0:
        return
    p = Path(folder) / LOCK
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        if not _flocked(fd, fcntl.LOCK_SH):
            raise _busy(flag, folder, _lock_holder(_read_fd(fd)))
        holder = _lock_holder(_read_fd(fd))
        if holder is not None:
            raise _busy(flag, folder, holder)
    finally:
        os.close(fd)        # releases the shared flock


def _inode(path: Path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


class FolderLock:
    """One live writer per folder: ``folder/.lock`` holds this process's exclusive flock (released by the kernel
    when the process dies, however it dies) and names its pid and host; removed on exit.  A lock whose holder is
    gone is taken over; one held by a live process is an ``ArgumentError``.  Two commands started together both
    pass their checks, but only one of them gets the flock."""

    def __init__(self, folder, flag: str = "--out"):
        self.folder, self.flag = (None if folder is None else Path(folder)), flag
        self.fd = None

    def __enter__(self) -> "FolderLock":
        import fcntl
        if self.folder is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK
        for _ in range(5):
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            if not _flocked(fd, fcntl.LOCK_EX):
                holder = _lock_holder(_read_fd(fd))
                os.close(fd)
                raise _busy(self.flag, self.folder, holder)
            if os.fstat(fd).st_ino != _inode(path):     # its last holder removed it meanwhile: open the new one
                os.close(fd)
                continue
            holder = _lock_holder(_read_fd(fd))
            if holder is not None:          # a live process that holds no flock (another kind of file system)
                os.close(fd)
                raise _busy(self.flag, self.folder, holder)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n{_host()}\n".encode())
            self.fd = fd
            return self
        raise ArgumentError(f"{self.flag} {self.folder}: could not take the lock {path}")

    def __exit__(self, *exc) -> bool:
        if self.fd is not None:
            (self.folder / LOCK).unlink(missing_ok=True)     # unlink first: a waiting opener sees a new inode
            os.close(self.fd)
            self.fd = None
        return False


class ReplaceOnSuccess:
    """``--overwrite`` that never loses work: the earlier results in ``out`` (the entries matching the glob
    patterns ``known``; nothing else there is touched) are moved into ``out/.replaced/`` when the block starts and
    deleted once it succeeds.  When it fails or is interrupted, what happens depends on what the new command left:
    nothing it can continue from (``resumable(out)`` false: the default) -- its files under those names are removed
    and the earlier results moved back; work it can continue from (a checkpoint) -- that is kept, and so are the
    earlier results, in ``out/.replaced/``, for the user to delete once the new run is done.  Says on stderr what
    it moved, replaced, restored or kept."""

    ASIDE = ".replaced"

    def __init__(self, out, known=(), *, prog: str = "", resumable=None):
        self.out = None if out is None else Path(out)
        self.known, self.prog, self.resumable = tuple(known), prog, resumable
        self.moved: list[str] = []
        self.outcome = None         # after the block: "replaced", "kept" (both runs kept) or "restored"

    def _matches(self) -> list[Path]:
        if self.out is None or not self.known or not self.out.is_dir():
            return []
        return sorted(e for e in self.out.iterdir()
                      if e.name != self.ASIDE and any(fnmatch.fnmatch(e.name, k) for k in self.known))

    def _say(self, text: str) -> None:
        print(f"{self.prog}: {text}" if self.prog else text, file=sys.stderr)

    def __enter__(self) -> "ReplaceOnSuccess":
        earlier = self._matches()
        if earlier:
            aside = self.out / self.ASIDE
            if aside.exists():      # left by an earlier --overwrite: the oldest results; never overwritten
                raise ArgumentError(f"--overwrite: {aside} holds results an earlier --overwrite kept aside; move "
                                    "what you need out of it (or delete it), then run again")
            aside.mkdir()
            try:
                for entry in earlier:
                    os.replace(entry, aside / entry.name)
                    self.moved.append(entry.name)
            except OSError as err:      # put back what moved: the folder is as it was
                self._restore(aside)
                raise ArgumentError(f"--overwrite: could not move {entry} aside ({err.strerror or err}); nothing "
                                    "was changed") from None
            self._say(f"--overwrite: moved the earlier results aside ({_listing(self.moved)}); they are deleted "
                      f"once this command succeeds and restored if it fails")
        return self

    def _restore(self, aside: Path) -> None:
        for name in self.moved:
            os.replace(aside / name, self.out / name)
        aside.rmdir()
        self.moved = []

    def __exit__(self, kind, err, tb) -> bool:
        if not self.moved:
            return False
        aside = self.out / self.ASIDE
        moved = _listing(self.moved)
        if kind is None:
            shutil.rmtree(aside)
            self.outcome = "replaced"
            self._say(f"--overwrite: replaced the earlier results in {self.out} ({moved})")
        elif self.resumable is not None and self.resumable(self.out):
            self.outcome = "kept"
            self._say(f"--overwrite: the new run stopped, but it can continue from what it wrote, so it was kept; "
                      f"the earlier results ({moved}) are kept in {aside} until you delete them")
        else:
            for entry in self._matches():       # what the failed command wrote under the results' names
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            self._restore(aside)
            self.outcome = "restored"
            self._say(f"--overwrite: the command did not finish, so the earlier results in {self.out} were "
                      f"restored ({moved})")
        return False


def check_output_file(path, flag: str, *, overwrite: bool = False) -> Path:
    """A file a result may be written to: its folder exists or can be created, is writable, and the file does not
    exist yet (or ``overwrite``)."""
    p = Path(path)
    if p.is_dir():
        raise ArgumentError(f"{flag} {path}: is a folder, expected a file name")
    if p.exists():
        if not overwrite:
            raise ArgumentError(f"{flag} {path}: the file exists; pick another name or pass --overwrite to replace it")
        if not os.access(p, os.W_OK):
            raise ArgumentError(f"{flag} {path}: the file is not writable")
    if p.parent.exists() and not p.parent.is_dir():
        raise ArgumentError(f"{flag} {path}: cannot be created, {p.parent} is a file")
    if p.parent.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        raise ArgumentError(f"{flag} {path}: the folder {p.parent} is not writable")
    if p.parent.exists():
        _probe_write(p.parent, flag, path)
    else:
        _check_creatable(p.parent, flag, path)
    return p


class created_dir_guard:
    """Removes ``path`` again if this block created it and fails leaving it empty (a failed command leaves
    no empty run folder behind)."""

    def __init__(self, path):
        self.path = None if path is None else Path(path)
        self.existed = self.path is None or self.path.exists()

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None and not self.existed and self.path.is_dir():
            try:
                if not any(self.path.iterdir()):
                    self.path.rmdir()
            except OSError:
                pass
        return False


# ----------------------------------------------------------------------------------------------- misc
def progress_default(flag) -> bool:
    """``--progress`` / ``--no-progress`` left out: on when stderr is a terminal."""
    if flag is not None:
        return bool(flag)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def resolve_threads(n: int) -> int:
    """``--threads N``: N CPU threads, 0 meaning all cores (the same in both commands)."""
    return n if n > 0 else (os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------- the error path
def run_cli(prog: str, parser: argparse.ArgumentParser, argv, dispatch, *, handlers=(), interrupted=None) -> int:
    """Parse ``argv`` and call ``dispatch(args)``; returns the exit status instead of raising SystemExit.

    ``parser``: the parser, or a function that builds it (then Ctrl-C while it builds is answered too).
    ``handlers``: extra ``(exception type, status)`` pairs, tried before UserError.  ``interrupted(args)``: the
    text printed after Ctrl-C (what is on disk, how to resume)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        if callable(parser):       # a factory: building the parser imports torch, which takes seconds
            parser = parser()
        args = parser.parse_args(argv)
    except SystemExit as exit_:       # argparse's own usage errors (already printed, status 2) and --help/--version
        return int(exit_.code or 0)
    except KeyboardInterrupt:         # Ctrl-C while starting up: nothing has run yet
        if debug:
            raise
        print(f"\n{prog}: interrupted while starting; nothing was run", file=sys.stderr)
        return 130
    command = getattr(args, "command", None)
    name = f"{prog} {command}" if command else prog
    try:
        return dispatch(args)
    except KeyboardInterrupt:
        if debug:
            raise
        text = interrupted(args) if interrupted is not None else None
        print(f"\n{name}: interrupted" + (f"; {text}" if text else ""), file=sys.stderr)
        return 130
    except Exception as err:
        for kind, status in handlers:
            if isinstance(err, kind):
                if debug:
                    raise
                print(f"{name}: {'error: ' if status == 2 else ''}{err}", file=sys.stderr)
                return status
        if isinstance(err, UserError) and not debug:
            print(f"{name}: error: {err}", file=sys.stderr)
            return 2
        raise

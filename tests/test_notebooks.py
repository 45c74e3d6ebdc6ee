"""Every notebook in notebooks/ runs headless, with its small settings, and a notebook that raises fails.

Each ``notebooks/*.ipynb`` (picked up by glob) is executed with nbclient in a fresh kernel running this interpreter
(a kernelspec written for ``sys.executable``, so it is the project's venv whatever ``python`` is on PATH), with
``NOTEBOOK_SMALL=1``, ``NOTEBOOK_OUT`` set to a temporary folder and that folder's parent as the working directory.
A cell that raises, or runs past ``CELL_TIMEOUT`` seconds, fails the test with the notebook's name, the cell's index
and source, and the error.  The committed notebooks must have their outputs stripped and start with a code cell
tagged ``parameters`` that reads ``NOTEBOOK_SMALL`` and ``NOTEBOOK_OUT``.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Imported outright (no importorskip): without them the notebooks would go unchecked, so CI must fail instead.
import nbclient
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300           # seconds per cell; small settings take well under a minute per notebook
FIGURE_SUFFIXES = {".png", ".svg", ".pdf", ".jpg", ".jpeg"}
SOURCE_LINES_SHOWN = 40
ANSI = re.compile(r"\x1b\[[0-9;]*m")   # colour codes in IPython tracebacks
pytestmark = pytest.mark.slow          # a kernel per notebook, each run end to end


class NotebookCellError(AssertionError):
    """A notebook cell raised (or timed out, or killed the kernel) under nbclient."""


@dataclass
class NotebookRun:
    notebook: str
    workdir: Path
    out: Path
    error: str | None = None
    executed: object = field(default=None, repr=False)

    def figures(self) -> list[Path]:
        return sorted(p for p in self.out.rglob("*") if p.suffix.lower() in FIGURE_SUFFIXES and p.stat().st_size > 0)


def _kernel_manager(workdir: Path) -> AsyncKernelManager:
    """A KernelManager whose 'python3' kernel runs this very interpreter (not whatever 'python' is on PATH)."""
    kernels = workdir / ".kernels"
    if not (kernels / "python3" / "kernel.json").exists():
        write_kernel_spec(path=kernels / "python3")   # argv[0] = sys.executable
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _describe(name: str, index: int | None, cell, error: str) -> str:
    if cell is None:
        return f"{name}: {error}"
    lines = cell.source.splitlines()
    shown = "\n".join("    " + line for line in lines[:SOURCE_LINES_SHOWN])
    if len(lines) > SOURCE_LINES_SHOWN:
        shown += f"\n    ... ({len(lines) - SOURCE_LINES_SHOWN} more lines)"
    return f"{name}: cell {index} failed\n--- cell source ---\n{shown}\n--- error ---\n{error}"


def execute_notebook(nb, workdir: Path, out: Path, name: str = "notebook", timeout: int = CELL_TIMEOUT):
    """Run ``nb`` (a NotebookNode, executed in place) in small mode; raise NotebookCellError naming the failing cell."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NOTEBOOK_SMALL": "1", "NOTEBOOK_OUT": str(out), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    running = {"index": None}

    def on_cell_start(cell, cell_index, **_):
        running["index"] = cell_index

    client = nbclient.NotebookClient(nb, km=_kernel_manager(workdir), timeout=timeout, allow_errors=False,
                                     kernel_name="python3", resources={"metadata": {"path": str(workdir)}},
                                     on_cell_start=on_cell_start)
    try:
        client.execute(env=env, cwd=str(workdir))
    except CellExecutionError as err:
        index = running["index"]
        cell = nb.cells[index] if index is not None else None
        errors = [o for o in (cell.get("outputs", []) if cell is not None else []) if o.get("output_type") == "error"]
        error = f"{errors[0].ename}: {errors[0].evalue}" if errors else type(err).__name__
        detail = ANSI.sub("", str(err))[-3000:]
        raise NotebookCellError(_describe(name, index, cell, f"{error}\n\n{detail}")) from None
    except (CellTimeoutError, DeadKernelError) as err:
        index = running["index"]
        cell = nb.cells[index] if index is not None else None
        raise NotebookCellError(_describe(name, index, cell, f"{type(err).__name__}: {err}")) from None
    return nb


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ---------------------------------------------------------------------------------------------------------------
# Each notebook runs once per test session (shared by the tests that look at its run).
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook_run(request, tmp_path_factory) -> NotebookRun:
    path: Path = request.param
    workdir = tmp_path_factory.mktemp(path.stem)
    run = NotebookRun(path.name, workdir, workdir / "notebook-out")
    try:
        run.executed = execute_notebook(_read(path), workdir, run.out, name=path.name)
    except NotebookCellError as err:
        run.error = str(err)
    return run


def test_notebooks_are_found():
    assert len(NOTEBOOKS) >= 2, f"expected the analysis notebooks in {NOTEBOOK_DIR}, found {NOTEBOOKS}"


def test_notebook_executes(notebook_run):
    if notebook_run.error:
        pytest.fail(notebook_run.error, pytrace=False)


def test_notebook_writes_a_figure(notebook_run):
    if notebook_run.error:
        pytest.fail(f"{notebook_run.notebook} did not run to the end (see test_notebook_executes)", pytrace=False)
    figures = notebook_run.figures()
    assert figures, f"{notebook_run.notebook} wrote no figure into NOTEBOOK_OUT={notebook_run.out}"
    assert all(p.resolve().is_relative_to(notebook_run.out.resolve()) for p in figures)


# ---------------------------------------------------------------------------------------------------------------
# The committed files
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_stripped_and_parametrised(path: Path):
    nb = _read(path)
    nbformat.validate(nb)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, (
        f"{path.name}: code cells {with_outputs} hold outputs or execution counts; commit notebooks stripped, e.g. "
        f"jupyter nbconvert --clear-output --inplace {path.relative_to(NOTEBOOK_DIR.parent)}")
    assert path.stat().st_size < 200_000, f"{path.name} is {path.stat().st_size} bytes: keep notebooks small"
    code = _code_cells(nb)
    assert code, f"{path.name} has no code cell"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), (
        f"{path.name}: the first code cell must be tagged 'parameters' (cell metadata tags)")
    for variable, env in (("SMALL", "NOTEBOOK_SMALL"), ("OUT", "NOTEBOOK_OUT")):
        assert variable in first.source and env in first.source, (
            f"{path.name}: the parameters cell must set {variable} from the {env} environment variable")


# ---------------------------------------------------------------------------------------------------------------
# The harness itself: it runs the venv's interpreter, in the right place, and a raising cell fails
# ---------------------------------------------------------------------------------------------------------------
def _tiny(*sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _stream(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def test_kernel_is_this_interpreter_with_small_settings(tmp_path):
    out = tmp_path / "out"
    nb = _tiny("import json, os, sys\n"
               "print(json.dumps({'exe': sys.executable, 'prefix': sys.prefix, 'cwd': os.getcwd(),"
               " 'small': os.environ.get('NOTEBOOK_SMALL'), 'out': os.environ.get('NOTEBOOK_OUT')}))")
    execute_notebook(nb, tmp_path, out)
    seen = json.loads(_stream(nb.cells[0]).strip().splitlines()[-1])
    assert Path(seen["prefix"]).resolve() == Path(sys.prefix).resolve(), seen
    assert Path(seen["exe"]).resolve() == Path(sys.executable).resolve(), seen
    assert Path(seen["cwd"]).resolve() == tmp_path.resolve()
    assert seen["small"] == "1" and Path(seen["out"]) == out


def test_a_raising_cell_fails_and_names_the_cell(tmp_path):
    nb = _tiny("x = 1", "y = x + 1\nraise ValueError('boom from the notebook')", "z = 3")
    with pytest.raises(NotebookCellError) as caught:
        execute_notebook(nb, tmp_path, tmp_path / "out", name="tiny.ipynb")
    message = str(caught.value)
    assert "tiny.ipynb: cell 1 failed" in message
    assert "raise ValueError('boom from the notebook')" in message      # the cell's source
    assert "ValueError: boom from the notebook" in message              # and its error
    assert not nb.cells[2].get("outputs") and nb.cells[2].execution_count is None   # execution stopped there


def test_a_cell_past_the_timeout_fails(tmp_path):
    nb = _tiny("import time\ntime.sleep(30)")
    with pytest.raises(NotebookCellError, match=r"cell 0 failed(.|\n)*time\.sleep\(30\)(.|\n)*CellTimeoutError"):
        execute_notebook(nb, tmp_path, tmp_path / "out", name="slow.ipynb", timeout=2)

"""The package's shape: every import points down the three layers (mi_toolkit <- synthetic <- superinfo), no
module imports itself back through a cycle, and a training step reads nothing back to the host between log rows."""
import ast
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mi_toolkit", "synthetic", "superinfo")
LAYER = {name: i for i, name in enumerate(PACKAGES)}        # a package may import only from layers <= its own


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module of the three packages that ``path`` imports, at top level or inside a function."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)   # `from pkg import module`
    return {m for m in found if m.split(".")[0] in PACKAGES}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the three packages it imports, for the packages under ``root``."""
    modules = {_module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path, root) if m in modules and m != name} for name, path in modules.items()}


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} imports {b}" for a, deps in graph.items() for b in deps
            if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]]


def test_every_import_points_down_the_layers():
    upward = _upward(import_graph())
    assert not upward, "\n".join(upward)


def _cycle(graph: dict[str, set[str]]):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    # a package's __init__ re-exporting its own modules is not a cycle: drop package -> submodule edges
    graph = {a: {b for b in deps if not b.startswith(a + ".")} for a, deps in import_graph().items()}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path):
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    # a copy of the three packages' layout in tmp_path (the source tree is never written), one module importing up
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "mi_toolkit" / "_layout_probe.py").write_text("from synthetic import CorrelatedGaussian\n")
    graph = import_graph(tmp_path)
    assert "synthetic" in graph["mi_toolkit._layout_probe"]
    assert _upward(graph) == ["mi_toolkit._layout_probe imports synthetic"]


# ------------------------------------------------------------------ host-device synchronisations per step
sys.path.insert(0, str(ROOT / "benchmarks"))
from host_syncs import BATCH, CountHostReads, Pairs  # noqa: E402


@pytest.mark.parametrize("lambda_a, probe", [(0.0, True), (0.1, True), (0.1, False)])
def test_a_training_step_reads_nothing_back_and_a_log_row_reads_once(tmp_path, lambda_a, probe):
    from fixtures_state import tiny_config
    from superinfo.trainer import build_training
    from superinfo.trainer.loop import MetricInterval, train_step

    cfg = tiny_config(tmp_path, dataset="digits", z_dim=8, epochs=1, batch_size=BATCH, warmup_epochs=0, device="cpu",
                      sigma=1.0, lambda_a=lambda_a, probe=probe,
                      lambda_warmup_epochs=0, lambda_ramp_epochs=0)      # lambda constant: loss = c + lambda * U
    t = build_training(cfg, Pairs(), num_classes=3)
    interval = MetricInterval()
    with CountHostReads() as steps:
        for batch, _ in zip(t.loader, range(10)):       # log_every's default: 10 steps between rows
            interval.add(train_step(t, batch), BATCH, 1e-3)
    device_reads = {k: v for k, v in steps.counts.items() if not k.startswith("host-side")}
    assert device_reads == {}
    with CountHostReads() as row:
        values = interval.row(t, elapsed=0.0)
    assert dict(row.counts) == {"tolist": 1}
    assert values["loss"] == pytest.approx(values["contrastive"] + lambda_a * (values["superfluous_a"]
                                                                              + values["superfluous_b"]), rel=1e-4)
    assert (values["probe_acc"] != "") == probe


def test_the_counter_sees_reads():
    with CountHostReads() as mode:
        x = torch.ones(3)
        bool(x.sum() > 0), float(x.sum()), x.sum().item(), x.tolist()
    assert sum(mode.counts.values()) == 4

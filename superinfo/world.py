"""The SuperInfo objective trained on the synthetic multi-view world, with exact information before and after.

    from superinfo.world import run_world, run_sweep
    result = run_world(lambda_a=0.1, bound="kl", seed=0)          # dict; result["superfluous_nats"], ...
    sweep = run_sweep([0, 0.1, 1], bounds=["kl", "club"], seeds=[0, 1, 2], out="runs/sweep")

Encoders: one Gaussian head per view (linear by default, so z = W v + b + sigma eps and every quantity is exact),
trained with Adam on fresh samples each step.  Probes: logistic regression on held-out samples of the stochastic
representation z1 (the one the information numbers describe), for a label from the shared part
(sign of a fixed projection of s) and one from t1 (sign of a fixed projection of t1); the accuracy of the Bayes
classifier on the same features is exact and reported next to it.  Probes on the deterministic mean are reported
too (``*_mean`` keys): for a linear encoder they only see the subspace W spans, not how much noise drowns it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mi_toolkit.atomic import write_json_atomically
from mi_toolkit.settings import INT0, INT1, NONNEGATIVE, POSITIVE, Range, check_settings, setting
from mi_toolkit.errors import ArgumentError, ArgumentTypeError
from synthetic.gaussian import gaussian_conditional_mi
from synthetic.multiview import EntangledMultiViewWorld, LinearGaussianEncoder, MultiViewWorld, NonlinearMultiViewWorld

from .lambdas import AUTO, DEFAULT_SLACK, lambda_weights
from .objective import CLUB_LOWER_BOUNDS, CONDITIONAL_BOUNDS, TEMPERATURES, GaussianPosteriorHead, SuperInfoLoss, contrastive_terms

__all__ = ["DEFAULTS", "WORLDS", "WorldConfig", "run_world", "run_sweep", "summarize", "plot_sweep", "plot_sweeps", "train_probe",
           "exact_quantities", "linear_encoder", "through_backbone"]

WORLDS = {"linear": MultiViewWorld, "nonlinear": NonlinearMultiViewWorld, "entangled": EntangledMultiViewWorld}

_BATCH, _PROBE_SAMPLES, _SHARE = Range(int, 2), Range(int, 10), Range(float, 0, 1)


@dataclass
class WorldConfig:
    """The world run's settings, each declared once: ``world`` and ``sweep-world`` flags, ``run_world``'s options
    (``DEFAULTS``) and their checks come from these fields.

    steps: 3000, because plain NT-Xent keeps piling up superfluous information long after its probe accuracy has
    settled (4.0 nats at 800 steps, 6.1 at 3000: docs/superinfo-world.md), and a penalty is judged against a
    converged baseline."""

    lower_bound: str = setting("pairwise", "lower bound on I(z1;z2): pairwise (default: the one-direction InfoNCE "
                               "bound, so that the exact I(z1;z2) and its bound compare), ntxent (SimCLR's) or one of "
                               "the mi_toolkit registry", choices=contrastive_terms)
    temperature: float = setting(TEMPERATURES["world"], "NT-Xent temperature", range=POSITIVE)
    # the API takes steps=0 (the untrained heads, a notebook's reference point); a command line has nothing to train
    steps: int = setting(3000, "training steps", range=INT0, cli_range=INT1)
    batch_size: int = setting(256, "samples (pairs) per step", range=_BATCH)
    lr: float = setting(0.01, "learning rate (Adam)", range=POSITIVE)
    z_dim: int = setting(8, "dimension of the representation z", range=INT1)
    sigma: float | str = setting(1.0, "encoder noise: a fixed number, 'learned' (bounded, per dimension) or "
                                 "'amortized'", range=POSITIVE, special=("learned", "amortized"))
    encoder_layers: int = setting(0, "hidden layers of each head (0: linear, the only case with exact information)",
                                  range=INT0)
    hidden: int = setting(64, "hidden width of each head", range=INT1)
    shared_dim: int = setting(4, "dimension of the shared part s", range=INT1)
    nuisance_dim: int = setting(6, "dimension of each view's superfluous part", range=INT0)
    t1_dim: int = setting(2, "dimension of view 1's task part t1", range=INT1)
    noise_std: float = setting(0.3, "std of e1, e2: how differently the two views see the shared part",
                               range=POSITIVE)
    world: str = setting("linear", "linear (t1 in view 1's nuisance), entangled (t1 on the shared directions) or "
                         "nonlinear", choices=tuple(WORLDS))
    probe_samples: int = setting(4000, "samples for the linear probes", range=_PROBE_SAMPLES)
    probe_steps: int = setting(100, "L-BFGS steps of each linear probe", range=INT1)
    log_every: int = setting(50, "steps per history row (0: no history)", range=INT0)
    lambda_warmup: float = setting(0.25, "share of the steps at lambda = 0 before the penalty (or automatic "
                                   "lambda) starts", range=_SHARE)
    lambda_ramp: float = setting(0.0, "share of the steps of the linear ramp to lambda after the warm-up",
                                 range=_SHARE)
    lambda_slack: float = setting(DEFAULT_SLACK, "auto: the share of the contrastive estimate the penalty may cost",
                                  range=Range(float, 0, 1, low_open=True, high_open=True))
    backbone_dim: int = setting(0, "width of a noisy linear backbone between each view and its head (0: none); the "
                                "probes read it", range=INT0)
    backbone_noise: float = setting(0.5, "std of the backbone's noise", range=NONNEGATIVE)
    t1_std: float = setting(0.6, "entangled world: std of t1", range=POSITIVE)


DEFAULTS = dataclasses.asdict(WorldConfig())


class NoisyLinearBackbone(torch.nn.Module):
    """h = B v + c + noise_std * eps: a backbone whose information about anything is finite and exact."""

    def __init__(self, in_dim: int, out_dim: int, noise_std: float):
        super().__init__()
        self.linear = torch.nn.Linear(in_dim, out_dim)
        self.noise_std = float(noise_std)

    def forward(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(v.shape[0], self.linear.out_features, generator=generator, dtype=v.dtype)
        return self.linear(v) + self.noise_std * eps

    def encoder(self) -> LinearGaussianEncoder:
        return LinearGaussianEncoder.make(self.linear.weight.detach().double().numpy(),
                                          self.linear.bias.detach().double().numpy(), noise_std=self.noise_std)


def through_backbone(backbone: NoisyLinearBackbone, head: LinearGaussianEncoder) -> LinearGaussianEncoder:
    """The encoder v -> z of a head on a noisy backbone: z = W (B v + c + noise_h) + b + noise_z."""
    inner = backbone.encoder()
    return LinearGaussianEncoder.make(head.weight @ inner.weight, head.weight @ inner.bias + head.bias,
                                      noise_cov=head.weight @ inner.noise_cov @ head.weight.T + head.noise_cov)


def _given_v2(world: MultiViewWorld, encoder: LinearGaussianEncoder, name: str) -> float:
    """I(features; ``name`` | v2) for features = encoder(v1), exactly."""
    cov, b = world.joint_covariance(encoder)
    return gaussian_conditional_mi(cov, b["z1"], b[name], b["v2"])


def linear_encoder(head: GaussianPosteriorHead) -> LinearGaussianEncoder:
    weight, bias, sigma = head.linear_parameters()
    return LinearGaussianEncoder.make(weight.double().numpy(), bias.double().numpy(), noise_std=sigma.double().numpy())


def exact_quantities(world: MultiViewWorld, head1: GaussianPosteriorHead, head2: GaussianPosteriorHead,
                     backbones: tuple | None = None) -> dict:
    """Exact nats and Bayes accuracies of the linear-Gaussian encoders (heads, on their noisy backbones when
    given) on the (linear) world; with backbones, ``backbone`` holds the same for h1 (what the probes read)."""
    enc1, enc2 = linear_encoder(head1), linear_encoder(head2)
    if backbones is not None:
        enc1, enc2 = through_backbone(backbones[0], enc1), through_backbone(backbones[1], enc2)
    info = world.exact_information(enc1, enc2)
    info["i_z1_t1_given_v2"] = _given_v2(world, enc1, "t1")
    if backbones is not None:
        h1 = backbones[0].encoder()
        inner = world.exact_information(h1)
        info["backbone"] = {"superfluous": inner["superfluous_1"], "i_h_s": inner["i_z1_s"],
                            "i_h_t1": inner["i_z1_t1"], "i_h_t1_given_v2": _given_v2(world, h1, "t1"),
                            "shared_bayes_acc": world.bayes_accuracy(h1, "shared"),
                            "t1_bayes_acc": world.bayes_accuracy(h1, "t1")}
    info.update({
        "kl_bound_a": world.expected_kl(enc1, enc2),
        "kl_bound_b": world.expected_kl(enc2, enc1),
        "club_bound_a_minus_i_z1_z2": world.club_value(enc1, 1) - info["i_z1_z2"],
        "shared_bayes_acc": world.bayes_accuracy(enc1, "shared"),
        "t1_bayes_acc": world.bayes_accuracy(enc1, "t1"),
        "shared_bayes_acc_mean": world.bayes_accuracy(enc1, "shared", include_noise=False),
        "t1_bayes_acc_mean": world.bayes_accuracy(enc1, "t1", include_noise=False),
    })
    return info


def train_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                steps: int = 100, l2: float = 1e-4) -> float:
    """Logistic regression (L-BFGS, standardised features) fitted on train, accuracy (fraction) on test."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-12)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    w = torch.zeros(xtr.shape[1], dtype=xtr.dtype, requires_grad=True)
    b = torch.zeros((), dtype=xtr.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    ytr = train_y.to(xtr.dtype)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xtr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b > 0).long() == test_y).double().mean())


def _probe_accuracies(world, head1, n, steps, generator, backbone=None) -> dict:
    """Logistic probes of both tasks on z1 (noisy and its mean) or, with a backbone, on h1 (noisy and its mean)."""
    head1.eval()
    out = {}
    with torch.no_grad():
        data = [world.sample(n, generator, dtype=torch.float64) for _ in range(2)]
        if backbone is None:
            post = [head1(d.v1.float()) for d in data]
            noisy = [p.rsample(generator).double() for p in post]
            mean = [p.mean.double() for p in post]
        else:
            noisy = [backbone(d.v1.float(), generator).double() for d in data]
            mean = [backbone.linear(d.v1.float()).double() for d in data]
    for task in ("shared", "t1"):
        labels = [getattr(d, f"{task}_label") for d in data]
        out[f"{task}_probe_acc"] = train_probe(noisy[0], labels[0], noisy[1], labels[1], steps)
        out[f"{task}_probe_acc_mean"] = train_probe(mean[0], labels[0], mean[1], labels[1], steps)
    head1.train()
    return out


def run_world(lambda_a: float = 0.0, lambda_b: float | None = None, bound: str = "kl", seed: int = 0,
              world_seed: int | None = None, allow_negative_lambda: bool = False, out: str | Path | None = None,
              **options) -> dict:
    """Train two Gaussian heads on the multi-view world with the SuperInfo loss; report exact information.

    ``options`` override ``DEFAULTS`` (lower_bound, temperature, steps, batch_size, lr, z_dim, sigma,
    encoder_layers, hidden, shared_dim, nuisance_dim, t1_dim, noise_std, world, probe_samples, probe_steps,
    log_every).  ``world_seed`` (default: ``seed``) draws the mixing matrices, ``seed`` the initialisation and
    data.  Writes ``out/world.json`` when ``out`` is given.  Exact quantities need the linear world and linear
    heads with input-independent sigma; otherwise they are ``None`` and only probes and bound values are reported.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ArgumentTypeError(f"run_world got unknown options {unknown}; valid: {', '.join(sorted(DEFAULTS))}")
    if bound not in CONDITIONAL_BOUNDS:
        raise ArgumentError(f"unknown bound {bound!r}; valid: {', '.join(CONDITIONAL_BOUNDS)}")
    check_settings(WorldConfig(**options))
    cfg = {**DEFAULTS, **options}
    if bound == "club" and cfg["lower_bound"] not in CLUB_LOWER_BOUNDS:
        raise ArgumentError(f"bound 'club' is an upper bound on the superfluous information only beside a true lower "
                            f"bound on I(z1;z2) ({', '.join(CLUB_LOWER_BOUNDS)}), not {cfg['lower_bound']!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    world_seed = seed if world_seed is None else world_seed
    started = time.perf_counter()

    world_kwargs = {"t1_std": cfg["t1_std"]} if cfg["world"] == "entangled" else {}
    world = WORLDS[cfg["world"]](shared_dim=cfg["shared_dim"], nuisance_dim=cfg["nuisance_dim"],
                                 t1_dim=cfg["t1_dim"], noise_std=cfg["noise_std"], seed=world_seed, **world_kwargs)
    loss_kwargs = {"temperature": cfg["temperature"]} if cfg["lower_bound"] in ("ntxent", "pairwise") else {}
    auto = lambda_a == AUTO
    if auto and lambda_b not in (None, AUTO):
        raise ArgumentError(f"lambda_b must be left out (tied) with lambda_a='auto', got {lambda_b!r}")
    loss_fn = SuperInfoLoss(cfg["z_dim"], 0.0 if auto else lambda_a, None if auto else lambda_b,
                            lower_bound=cfg["lower_bound"], conditional=bound,
                            allow_negative_lambda=allow_negative_lambda, **loss_kwargs)
    schedules, controller = lambda_weights(loss_fn.lambda_a, loss_fn.lambda_b, auto,
                                           int(round(cfg["lambda_warmup"] * cfg["steps"])),
                                           int(round(cfg["lambda_ramp"] * cfg["steps"])), cfg["steps"],
                                           cfg["lambda_slack"])
    torch.manual_seed(seed)
    backbones = None
    head_in = world.view_dim
    if cfg["backbone_dim"]:
        backbones = [NoisyLinearBackbone(world.view_dim, cfg["backbone_dim"], cfg["backbone_noise"]) for _ in range(2)]
        head_in = cfg["backbone_dim"]
    heads = [GaussianPosteriorHead(head_in, cfg["z_dim"], hidden=cfg["hidden"], layers=cfg["encoder_layers"],
                                   sigma=cfg["sigma"]) for _ in range(2)]
    exact = cfg["world"] != "nonlinear" and cfg["encoder_layers"] == 0 and cfg["sigma"] != "amortized"
    before = exact_quantities(world, *heads, backbones) if exact else None

    params = [p for m in (*heads, *(backbones or ()), loss_fn) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    gen = torch.Generator().manual_seed(10_000 + seed)
    history = []
    for step in range(cfg["steps"]):
        batch = world.sample(cfg["batch_size"], gen)
        v1, v2 = batch.v1, batch.v2
        if backbones is not None:
            v1, v2 = backbones[0](v1, gen), backbones[1](v2, gen)
        lambdas = {} if schedules is None else {"lambda_a": schedules[0](step), "lambda_b": schedules[1](step)}
        terms = loss_fn(heads[0](v1), heads[1](v2), generator=gen, **lambdas)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        if controller is not None:
            controller.update(step, terms.mi_lower, terms.superfluous_a + terms.superfluous_b)
        if cfg["log_every"] and (step % cfg["log_every"] == 0 or step == cfg["steps"] - 1):
            history.append({"step": step, **{k: v for k, v in terms.as_dict().items() if not k.startswith("lambda")}})
    train_seconds = time.perf_counter() - started

    after = exact_quantities(world, *heads, backbones) if exact else None
    probes = _probe_accuracies(world, heads[0], cfg["probe_samples"], cfg["probe_steps"],
                               torch.Generator().manual_seed(20_000 + seed), None if backbones is None else backbones[0])
    final = history[-1] if history else {}
    result = {
        "lambda": AUTO if auto else loss_fn.lambda_a,
        "lambda_b": AUTO if auto else loss_fn.lambda_b,
        # the weight the last steps trained with
        "lambda_final": float(schedules[0](cfg["steps"])) if schedules else loss_fn.lambda_a,
        "bound": bound,
        "seed": seed,
        "world_seed": world_seed,
        "superfluous_nats": after["superfluous_1"] if exact else None,
        "superfluous_b_nats": after["superfluous_2"] if exact else None,
        "shared_nats": after["i_z1_s"] if exact else None,
        "t1_nats": after["i_z1_t1"] if exact else None,
        "t1_given_v2_nats": after["i_z1_t1_given_v2"] if exact else None,
        "backbone": after.get("backbone") if exact else None,
        "i_z1_z2_nats": after["i_z1_z2"] if exact else None,
        **probes,
        # of what the probes read: z1, or h1 on a backbone
        "shared_bayes_acc": (after.get("backbone") or after)["shared_bayes_acc"] if exact else None,
        "t1_bayes_acc": (after.get("backbone") or after)["t1_bayes_acc"] if exact else None,
        "superfluous_nats_before": before["superfluous_1"] if exact else None,
        "t1_bayes_acc_before": before["t1_bayes_acc"] if exact else None,
        "final_terms": final,
        "sigma": [float(s) for s in heads[0].sigma()] if heads[0].sigma() is not None else None,
        "before": before,
        "after": after,
        "world_truth": world.view_information(),
        "world": repr(world),
        "config": {**cfg, "lambda_a": AUTO if auto else loss_fn.lambda_a,
                   "lambda_b": AUTO if auto else loss_fn.lambda_b, "bound": bound},
        "history": history,
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomically(out / "world.json", result)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Sweep
# ---------------------------------------------------------------------------------------------------------------
SUMMARY_KEYS = ("superfluous_nats", "shared_nats", "t1_nats", "i_z1_z2_nats", "shared_probe_acc", "t1_probe_acc",
                "shared_bayes_acc", "t1_bayes_acc", "shared_probe_acc_mean", "t1_probe_acc_mean",
                "superfluous_nats_before", "t1_bayes_acc_before")


def summarize(records: list[dict]) -> list[dict]:
    """Mean and standard deviation (ddof=1) over seeds for each (bound, lambda)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["bound"], r["lambda"]), []).append(r)
    rows = []
    for (bound, lam), rs in sorted(groups.items()):
        row = {"bound": bound, "lambda": lam, "n_seeds": len(rs)}
        for key in SUMMARY_KEYS:
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                row[key] = float(np.mean(vals))
                row[key + "_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def run_sweep(lambdas, bounds=("kl", "club"), seeds=(0, 1, 2), out: str | Path | None = None,
              progress=None, **options) -> dict:
    """``run_world`` for every (bound, lambda, seed); writes ``out/sweep.json`` and ``out/world_sweep.png``."""
    lambdas = [float(x) for x in lambdas]
    if not lambdas:
        raise ArgumentError("lambdas must hold at least one value")
    if any(x < 0 for x in lambdas) and not options.get("allow_negative_lambda", False):
        raise ArgumentError(f"lambdas hold a negative value {lambdas}; pass allow_negative_lambda=True if you mean it")
    for b in bounds:
        if b not in CONDITIONAL_BOUNDS:
            raise ArgumentError(f"unknown bound {b!r}; valid: {', '.join(CONDITIONAL_BOUNDS)}")
    records = []
    for bound in bounds:
        for lam in lambdas:
            for seed in seeds:
                r = run_world(lam, None, bound, seed, **options)
                r.pop("history")
                records.append(r)
                if progress is not None:
                    progress(r)
    sweep = {"lambdas": lambdas, "bounds": list(bounds), "seeds": list(seeds), "summary": summarize(records),
             "records": records}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomically(out / "sweep.json", sweep)
        plot_sweep(sweep["summary"], out / "world_sweep.png")
    return sweep


def plot_sweep(summary: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Superfluous information and both probe accuracies against lambda (mean ± std over seeds), per bound, and
    the trade-off panel: shared-task accuracy against the superfluous information kept."""
    return plot_sweeps([(summary, title)], path)


def plot_sweeps(sweeps: list[tuple[list[dict], str | None]], path: str | Path) -> Path:
    """One row of ``plot_sweep`` panels per ``(summary, title)`` (e.g. several worlds or training budgets)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("superfluous_nats", "superfluous I(z1;v1|v2) [nats]"),
              ("shared_probe_acc", "shared-task probe accuracy"),
              ("t1_probe_acc", "t1-task probe accuracy")]
    fig = plt.figure(figsize=(15, 3.5 * len(sweeps)), dpi=72, layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(sweeps), 1))
    for subfig, (summary, title) in zip(subfigs, sweeps):
        axes = subfig.subplots(1, 4)
        bounds = sorted({r["bound"] for r in summary})
        positive = sorted({abs(r["lambda"]) for r in summary if r["lambda"] != 0})
        linthresh = positive[0] if positive else 1.0
        styles = dict(zip(bounds, zip("os^v", ["C0", "C1", "C2", "C3"])))
        for ax, (key, label) in zip(axes, panels):
            for bound in bounds:
                rows = sorted((r for r in summary if r["bound"] == bound and key in r), key=lambda r: r["lambda"])
                if rows:
                    marker, color = styles[bound]
                    ax.errorbar([r["lambda"] for r in rows], [r[key] for r in rows],
                                yerr=[r[key + "_std"] for r in rows], marker=marker, color=color, capsize=3,
                                label=bound)
            ax.set_xscale("symlog", linthresh=linthresh)
            ax.set_xlabel("lambda (lambda_a = lambda_b)")
            ax.set_title(label, fontsize=10)
            ax.grid(alpha=0.3)
        for ax in axes[1:3]:
            ax.set_ylim(0.45, 1.0)
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        before = [r["t1_bayes_acc_before"] for r in summary if "t1_bayes_acc_before" in r]
        if before:
            axes[2].axhline(float(np.mean(before)), color="k", lw=1, ls="--", label="t1 at initialisation (Bayes)")
            axes[2].legend(fontsize=8, loc="upper right")
        ax = axes[3]
        for bound in bounds:
            rows = sorted((r for r in summary if r["bound"] == bound and "superfluous_nats" in r),
                          key=lambda r: r["lambda"])
            if rows:
                marker, color = styles[bound]
                ax.errorbar([r["superfluous_nats"] for r in rows], [r["shared_probe_acc"] for r in rows],
                            xerr=[r["superfluous_nats_std"] for r in rows],
                            yerr=[r["shared_probe_acc_std"] for r in rows], marker=marker, color=color, capsize=3,
                            label=bound)
        ax.set_xlabel("superfluous I(z1;v1|v2) kept [nats]")
        ax.set_title("trade-off: shared accuracy vs superfluous", fontsize=10)
        ax.set_ylim(0.45, 1.0)
        ax.grid(alpha=0.3)
        axes[0].legend(title="conditional bound", fontsize=8)
        if title:
            subfig.suptitle(title, fontsize=11, fontweight="bold", x=0.01, ha="left")
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path

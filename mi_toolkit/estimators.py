"""Estimators pair a critic (or a learned Gaussian conditional) with a bound.  Built by name:

    est = mi_toolkit.estimator("smile", x_dim, y_dim, critic="separable", hidden=256, layers=2)
    out = est(x, y)      # out.mi: differentiable estimate in nats; out.loss: what fits the estimator's parameters
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import bounds, kernels
from .critics import (GaussianConditional, GaussianMarginal, MixtureConditional, MixtureMarginal, SeparableCritic,
                      critic as build_critic, gaussian_log_density)
from .validation import check_features, check_int, check_number, check_samples

LOWER, UPPER, ESTIMATE = "lower", "upper", "estimate"


@dataclass
class EstimatorOutput:
    mi: torch.Tensor      # scalar estimate in nats, differentiable w.r.t. x and y (use it as a loss term)
    loss: torch.Tensor    # scalar to minimise to fit the estimator's own critic / conditional
    direction: str        # "lower", "upper" or "estimate": which way the bound goes
    cap: float | None     # largest value the estimator can report on this batch (log N for InfoNCE)


class MIEstimator(nn.Module):
    """Base class: checks the batch, then ``_estimate`` returns (mi, loss)."""

    name = "base"
    direction = ESTIMATE
    min_batch = 2

    def __init__(self, x_dim: int, y_dim: int, validate: bool = True):
        super().__init__()
        self.x_dim = check_int(x_dim, "x_dim")
        self.y_dim = check_int(y_dim, "y_dim")
        self.validate = validate

    def cap(self, batch_size: int) -> float | None:
        return None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> EstimatorOutput:
        if self.validate:
            x, y = check_samples(x, y, min_batch=self.min_batch)
            check_features(x, self.x_dim, "x", f"{self.name} estimator")
            check_features(y, self.y_dim, "y", f"{self.name} estimator")
        mi, loss = self._estimate(x, y)
        return EstimatorOutput(mi=mi, loss=loss, direction=self.direction, cap=self.cap(x.shape[0]))

    def _estimate(self, x, y):
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, direction={self.direction!r}, x_dim={self.x_dim}, y_dim={self.y_dim}"


class CriticEstimator(MIEstimator):
    """A lower bound evaluated on the score matrix of a critic; loss = -(bound or its training surrogate)."""

    direction = LOWER

    def __init__(self, name: str, x_dim: int, y_dim: int, critic: str = "separable", hidden: int = 256,
                 layers: int = 2, embed_dim: int = 32, validate: bool = True, **critic_kwargs):
        super().__init__(x_dim, y_dim, validate)
        self.name = name
        kwargs = dict(hidden=hidden, layers=layers, **critic_kwargs)
        if critic != "concat":
            kwargs["embed_dim"] = embed_dim
        self.critic = build_critic(critic, x_dim, y_dim, **kwargs)

    def _estimate(self, x, y):
        value = self.bound(self.critic(x, y))
        return value, -value


class InfoNCEEstimator(CriticEstimator):
    """InfoNCE.  With a separable critic and a large batch the loss runs through the fused kernel
    (``mi_toolkit.kernels.infonce``), which never stores the N x N score matrix.  ``backend``: ``"auto"`` (fused
    from ``kernels.FUSED_MIN_ROWS`` rows on), ``"matrix"`` (always the score matrix), or a kernel backend name."""

    def __init__(self, x_dim, y_dim, backend: str = "auto", **kw):
        super().__init__("infonce", x_dim, y_dim, **kw)
        kernels.fused_backend(backend, 2)  # rejects an unknown name now rather than at the first batch
        self.backend = backend
        self.bound = bounds.infonce_lower_bound

    def cap(self, batch_size):
        return bounds.infonce_cap(batch_size)

    def _estimate(self, x, y):
        backend = kernels.fused_backend(self.backend, x.shape[0])
        if backend is None or not isinstance(self.critic, SeparableCritic):
            return super()._estimate(x, y)
        # scores g(x)^T h(y) at temperature 1, rows x -> columns y: log N - loss is the InfoNCE bound
        gx, hy = self.critic.embed(x, y)
        loss = kernels.infonce(gx, hy, temperature=1.0, shape="pairwise",
                               symmetric=False, normalize=False, backend=backend)
        value = math.log(x.shape[0]) - loss
        return value, -value


class NWJEstimator(CriticEstimator):
    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("nwj", x_dim, y_dim, **kw)
        self.bound = bounds.nwj_lower_bound


class DVEstimator(CriticEstimator):
    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("dv", x_dim, y_dim, **kw)
        self.bound = bounds.dv_lower_bound


class JSEstimator(CriticEstimator):
    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("js", x_dim, y_dim, **kw)
        self.bound = bounds.js_lower_bound


class SMILEEstimator(CriticEstimator):
    def __init__(self, x_dim, y_dim, clip: float | None = 5.0, **kw):
        super().__init__("smile", x_dim, y_dim, **kw)
        self.clip = check_number(clip, "clip (tau)", positive=True, allow_none=True)

    def bound(self, scores):
        return bounds.smile_lower_bound(scores, self.clip)


class MINEEstimator(CriticEstimator):
    """DV value; the gradient uses a moving average of the partition term (in the log domain, so it never
    overflows).  ``ema_rate`` is the weight of the newest batch."""

    def __init__(self, x_dim, y_dim, ema_rate: float = 0.1, **kw):
        super().__init__("mine", x_dim, y_dim, **kw)
        if not 0.0 < ema_rate <= 1.0:
            raise ValueError(f"ema_rate must be in (0, 1], got {ema_rate!r}")
        self.ema_rate = float(ema_rate)
        self.register_buffer("log_running_mean", torch.tensor(float("nan")))

    def _estimate(self, x, y):
        running = None if torch.isnan(self.log_running_mean) else self.log_running_mean
        # training folds this batch into the average before using it; evaluation leaves the average alone
        value, surrogate, average = bounds.mine_lower_bound(self.critic(x, y), running,
                                                            self.ema_rate if self.training else None)
        if self.training:
            self.log_running_mean.copy_(average)
        return value, -surrogate


CONDITIONALS = ("gaussian", "mixture")


class ConditionalEstimator(MIEstimator):
    """Estimators built on a learned q(y|x); loss = its negative log-likelihood (maximum likelihood fit).
    ``conditional="gaussian"`` (one diagonal Gaussian, the default here) or ``"mixture"`` (a mixture-density network
    of ``components`` diagonal Gaussians: non-Gaussian conditionals)."""

    def __init__(self, name: str, x_dim: int, y_dim: int, hidden: int = 256, layers: int = 2,
                 validate: bool = True, conditional: str = "gaussian", components: int = 4, **conditional_kwargs):
        super().__init__(x_dim, y_dim, validate)
        self.name = name
        if conditional not in CONDITIONALS:
            raise ValueError(f"conditional must be one of {', '.join(CONDITIONALS)}, got {conditional!r}")
        self.conditional_kind = conditional
        self.components = check_int(components, "components")
        if conditional == "mixture":
            self.conditional = MixtureConditional(x_dim, y_dim, hidden=hidden, layers=layers, components=components,
                                                  **conditional_kwargs)
        else:
            self.conditional = GaussianConditional(x_dim, y_dim, hidden=hidden, layers=layers, **conditional_kwargs)


class CLUBEstimator(ConditionalEstimator):
    direction = UPPER

    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("club", x_dim, y_dim, **kw)

    def _estimate(self, x, y):
        log_q = self.conditional.log_prob_matrix(x, y)
        return bounds.club_upper_bound(log_q), -log_q.diagonal().mean()


class CLUBSampleEstimator(ConditionalEstimator):
    direction = UPPER

    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("club_sample", x_dim, y_dim, **kw)

    def _estimate(self, x, y):
        n = x.shape[0]
        order = torch.randperm(n, device=x.device)
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)  # a random derangement: nobody is paired with itself
        if isinstance(self.conditional, GaussianConditional):
            mu, logvar = self.conditional(x)
            log_q_joint = gaussian_log_density(mu, logvar, y)
            log_q_shuffled = gaussian_log_density(mu, logvar, y[partner])
        else:
            log_q_joint = self.conditional.log_prob(x, y)
            log_q_shuffled = self.conditional.log_prob(x, y[partner])
        return bounds.club_sample_upper_bound(log_q_joint, log_q_shuffled), -log_q_joint.mean()


class L1OutEstimator(ConditionalEstimator):
    direction = UPPER

    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("l1out", x_dim, y_dim, **kw)

    def _estimate(self, x, y):
        log_q = self.conditional.log_prob_matrix(x, y)
        return bounds.l1out_upper_bound(log_q), -log_q.diagonal().mean()


class BAEstimator(ConditionalEstimator):
    """Barber-Agakov.  With ``entropy_y`` given it is a lower bound; without, H(Y) comes from a Gaussian fit to
    every y seen so far (the maximum-entropy value for that covariance), which makes it an estimate."""

    def __init__(self, x_dim, y_dim, entropy_y: float | None = None, **kw):
        super().__init__("ba", x_dim, y_dim, **kw)
        if entropy_y is not None and not math.isfinite(entropy_y):
            raise ValueError(f"entropy_y must be a finite number (nats) or None, got {entropy_y!r}")
        self.entropy_y = entropy_y
        self.direction = LOWER if entropy_y is not None else ESTIMATE
        self.register_buffer("_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("_sum", torch.zeros(y_dim, dtype=torch.float64))
        self.register_buffer("_outer", torch.zeros(y_dim, y_dim, dtype=torch.float64))

    def gaussian_entropy_estimate(self) -> float:
        mean = self._sum / self._count
        cov = self._outer / self._count - torch.outer(mean, mean)
        cov = cov + 1e-9 * torch.eye(self.y_dim, dtype=cov.dtype, device=cov.device)
        return 0.5 * float(torch.logdet(2 * math.pi * math.e * cov))

    def _estimate(self, x, y):
        log_q_joint = self.conditional.log_prob(x, y)
        if self.entropy_y is None:
            if self.training or self._count < 2:
                with torch.no_grad():
                    y64 = y.detach().double()
                    self._count += y64.shape[0]
                    self._sum += y64.sum(0)
                    self._outer += y64.T @ y64
            entropy = self.gaussian_entropy_estimate()
        else:
            entropy = self.entropy_y
        return bounds.ba_lower_bound(log_q_joint, entropy), -log_q_joint.mean()


class DoEEstimator(ConditionalEstimator):
    def __init__(self, x_dim, y_dim, **kw):
        super().__init__("doe", x_dim, y_dim, **kw)
        self.marginal = MixtureMarginal(y_dim, self.components) if self.conditional_kind == "mixture" \
            else GaussianMarginal(y_dim)

    def _estimate(self, x, y):
        log_q_joint = self.conditional.log_prob(x, y)
        log_q_marginal = self.marginal.log_prob(y)
        return bounds.doe_estimate(log_q_joint, log_q_marginal), -(log_q_joint.mean() + log_q_marginal.mean())


ESTIMATORS = {
    "infonce": (InfoNCEEstimator, "InfoNCE / CPC lower bound, capped at log N"),
    "nwj": (NWJEstimator, "NWJ (f-divergence) lower bound"),
    "dv": (DVEstimator, "Donsker-Varadhan bound, plain gradient"),
    "mine": (MINEEstimator, "MINE: DV value, moving-average bias-corrected gradient"),
    "js": (JSEstimator, "trained with the Jensen-Shannon objective, read with NWJ on f+1"),
    "smile": (SMILEEstimator, "SMILE: JS-trained critic, DV value with clipped partition (clip=5)"),
    "ba": (BAEstimator, "Barber-Agakov with a learned Gaussian q(y|x) and known (or Gaussian-fit) H(Y)"),
    "doe": (DoEEstimator, "difference of entropies with Gaussian q(y|x) and q(y)"),
    "club": (CLUBEstimator, "CLUB upper bound with a learned Gaussian q(y|x), all N(N-1) negatives"),
    "club_sample": (CLUBSampleEstimator, "CLUB with one sampled negative per row"),
    "l1out": (L1OutEstimator, "leave-one-out upper bound with a learned Gaussian q(y|x)"),
}


def available_estimators() -> list[str]:
    """The trainable (neural) estimators: every one is an ``MIEstimator`` built by ``estimator()``."""
    return sorted(ESTIMATORS)


def all_estimators() -> list[str]:
    """Every name ``estimate()`` takes: the trainable estimators and the classical ones (``ksg``, ``gaussian``)."""
    from .classical import CLASSICAL
    return sorted(set(ESTIMATORS) | set(CLASSICAL))


# the task suite's default: every estimator, the classical baselines included
DEFAULT_SUITE_ESTIMATORS = ("infonce", "nwj", "dv", "mine", "js", "smile", "ba", "doe", "club", "club_sample",
                            "l1out", "ksg", "gaussian")


def check_estimator_name(name) -> str:
    """``name`` if it is a registered estimator, else a ValueError listing the valid names."""
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; valid estimators: {', '.join(available_estimators())}")
    return name


def estimator(name: str, x_dim: int, y_dim: int, **kwargs) -> MIEstimator:
    """Build an estimator by name (see ``available_estimators()``).

    Critic-based lower bounds take ``critic`` (separable/bilinear/concat), ``hidden``, ``layers``, ``embed_dim``;
    ``smile`` takes ``clip``; ``mine`` takes ``ema_rate``; conditional ones take ``hidden``, ``layers``; ``ba``
    takes ``entropy_y``; conditional ones (ba, doe, club, club_sample, l1out) take ``conditional="gaussian"|
    "mixture"`` and ``components`` (mixture-density q(y|x); DoE's q(y) becomes a mixture too).
    """
    cls, _ = ESTIMATORS[check_estimator_name(name)]
    try:
        return cls(x_dim, y_dim, **kwargs)
    except TypeError as err:
        raise TypeError(f"estimator {name!r} got an unsupported argument: {err}") from None

"""The SuperInfo objective (arXiv 2408.10292): maximise J = I(z1;z2) - lambda_a I(v1;z1|v2) - lambda_b I(v2;z2|v1).

We minimise the bound-based loss

    L = -I_hat(z1;z2) + lambda_a U(v1;z1|v2) + lambda_b U(v2;z2|v1)

with I_hat a lower bound (NT-Xent/InfoNCE on cosine similarities by default, or any lower bound of the
``mi_toolkit`` registry by name) and U an upper bound on the superfluous information:

* ``kl``: U(v1;z1|v2) = E KL(p(z1|v1) || p(z2|v2)), closed form for diagonal Gaussians (Multi-View Information
  Bottleneck).  For ANY conditional q(.|v2) that sees v2 only, E_{v1,v2} KL(p(z1|v1) || q(.|v2)) =
  I(z1;v1|v2) + E_{v2} KL(p(z1|v2) || q(.|v2)) >= I(z1;v1|v2): the second encoder need not share weights with the
  first for the bound to hold (sharing only makes it tighter).  What it needs: the expectation over the joint
  (v1, v2), z1's law being exactly the Gaussian the KL uses, and q not looking at v1.
* ``club``: I(v1;z1|v2) = I(v1;z1) - I(z1;v2) <= CLUB(v1 -> z1 with the encoder's own density) - I_hat(z1;z2),
  since I(z1;v2) >= I(z1;z2) >= E I_hat (data processing, then the lower bound).

Functional core: ``cosine_similarity_scores``, ``ntxent_loss``, ``kl_conditional_bound``,
``club_conditional_bound``.  Thin modules: ``GaussianPosteriorHead`` (a stochastic encoder head) and
``SuperInfoLoss`` (returns every term, and the total).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import mi_toolkit
from mi_toolkit import kernels
from mi_toolkit.bounds import club_upper_bound, gaussian_kl_diag, infonce_lower_bound
from mi_toolkit.critics import gaussian_log_density_matrix, mlp
from mi_toolkit.distributed import all_gather_with_grad, is_distributed, rank
from mi_toolkit.errors import ArgumentError
from mi_toolkit.validation import check_int, check_matrix, check_number, check_pair

__all__ = [
    "CLUB_LOWER_BOUNDS", "CONDITIONAL_BOUNDS", "DEFAULT_TEMPERATURE", "TEMPERATURES", "GaussianPosterior", "GaussianPosteriorHead", "SuperInfoLoss",
    "SuperInfoTerms", "club_conditional_bound", "contrastive_terms", "cosine_similarity_scores", "kl_conditional_bound", "ntxent_loss",
    "ntxent_loss_local", "ntxent_mi_estimate", "pairwise_infonce_loss", "pairwise_infonce_loss_local",
]

CONDITIONAL_BOUNDS = ("kl", "club")
# contrastive terms whose estimate is a true lower bound on I(z1; z2): only beside one is the club term an upper
# bound on the superfluous information (NT-Xent's 2N views are dependent negatives; DV, MINE and SMILE sit above
# the truth on a batch: docs/decisions.md).  The trainer and the world refuse club with any other.
CLUB_LOWER_BOUNDS = ("pairwise", "infonce", "nwj")


def contrastive_terms() -> tuple:
    """The names a contrastive term (lower bound on I(z1; z2)) may take: ``ntxent`` (SimCLR's), ``pairwise`` (the
    one-direction InfoNCE bound) and every lower bound of the mi_toolkit registry."""
    import mi_toolkit
    from mi_toolkit.estimators import ESTIMATORS
    return ("ntxent", "pairwise") + tuple(n for n in mi_toolkit.available_estimators()
                                          if ESTIMATORS[n][0].direction == "lower")

# NT-Xent's temperature: one default per use, all of them here.
TEMPERATURES = {
    "loss": 0.1,            # the functions and SuperInfoLoss: SimCLR's best value at large batches
    "small_images": 0.5,    # cifar10 / stl10 presets: SimCLR's CIFAR-10 setting (batch 256-512)
    "digits": 0.2,          # digits preset: +1.4 points of linear top-1 over 0.5 (docs/ablations.md)
    "imagenet": 0.1,        # imagenet preset: SimCLR's ImageNet setting (batch 4096)
    "world": 0.2,           # the exact-truth world (8-dim heads, batch 256; docs/superinfo-world.md)
}
DEFAULT_TEMPERATURE = TEMPERATURES["loss"]
NTXENT = "ntxent"           # SimCLR's NT-Xent over the 2N views (the trainer's contrastive term)
PAIRWISE = "pairwise"       # the one-direction InfoNCE bound on I(z1;z2) (the exact-truth world's)


# ---------------------------------------------------------------------------------------------------------------
# Argument checks (mi_toolkit.validation's; the objective never scans values, so no device syncs)
# ---------------------------------------------------------------------------------------------------------------
def _check_pair(a, b, a_name: str, b_name: str, min_batch: int = 1) -> None:
    """Two [N, d] floating tensors of one shape (dtypes may differ, e.g. a float32 logvar under autocast)."""
    check_pair(a, b, (a_name, b_name), min_rows=min_batch, same_kind=False, finite=False)


# ---------------------------------------------------------------------------------------------------------------
# Functional core
# ---------------------------------------------------------------------------------------------------------------
def cosine_similarity_scores(z1: torch.Tensor, z2: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """S[i, j] = cos(z1_i, z2_j) / temperature: the critic of NT-Xent (SimCLR)."""
    temperature = check_number(temperature, "temperature", positive=True)
    _check_pair(z1, z2, "z1", "z2")
    return F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature


def ntxent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                backend: str = "auto") -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1 and its loss over all positive pairs): each of the 2N views
    u in [z1; z2] is scored against the other 2N - 1 by cosine similarity / temperature; its positive is the other
    view of the same image; the loss is the mean over the 2N rows of -log softmax at the positive.

    ``log(2N - 1) - loss`` estimates I(z1;z2) when the two views are exchangeable (``ntxent_mi_estimate``); the
    one-direction InfoNCE bound proper is ``pairwise_infonce_loss``.  ``backend``: ``"matrix"`` or ``"auto"``
    below ``mi_toolkit.kernels.FUSED_MIN_ROWS`` rows build the 2N x 2N scores; a kernel backend name (``"chunked"``,
    ``"triton"``) or ``"auto"`` from there on run the fused O(N)-memory kernel.
    """
    _check_pair(z1, z2, "z1", "z2", min_batch=2)
    temperature = check_number(temperature, "temperature", positive=True)
    backend = kernels.fused_backend(backend, 2 * z1.shape[0]) or "naive"
    return kernels.infonce(z1, z2, temperature=temperature, shape="simclr", normalize=True, backend=backend)


def ntxent_mi_estimate(loss: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The InfoNCE reading of an NT-Xent loss over ``batch_size`` pairs: log(2N - 1) - loss (at most log(2N - 1))."""
    return math.log(2 * batch_size - 1) - loss


def ntxent_loss_local(z1: torch.Tensor, z2: torch.Tensor, z1_all: torch.Tensor, z2_all: torch.Tensor,
                      row_offset: int, temperature: float = DEFAULT_TEMPERATURE, backend: str = "auto") -> torch.Tensor:
    """One rank's share of ``ntxent_loss(z1_all, z2_all)``: the mean over this rank's 2n rows (rows ``row_offset``
    .. ``row_offset + n - 1`` of z1_all and of z2_all) of their NT-Xent against all 2N gathered views.

    With equal rows per rank the mean over ranks equals ``ntxent_loss(z1_all, z2_all)``; gather z1_all, z2_all with
    ``mi_toolkit.distributed.all_gather_with_grad`` so the negatives carry gradients back to their ranks.
    """
    _check_pair(z1, z2, "z1", "z2")
    _check_pair(z1_all, z2_all, "z1_all", "z2_all", min_batch=2)
    temperature = check_number(temperature, "temperature", positive=True)
    backend = kernels.fused_backend(backend, 2 * z1_all.shape[0]) or "naive"
    return kernels.infonce_local(z1, z2, z1_all, z2_all, row_offset, temperature=temperature, shape="simclr",
                                 normalize=True, backend=backend, reduction="mean")


def pairwise_infonce_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                          backend: str = "auto") -> torch.Tensor:
    """-InfoNCE on cosine similarities at a temperature, one direction (z1 -> z2; the in-batch z2's are the
    negatives): minus the value is a lower bound on I(z1;z2) (<= log N).  The exact-truth world trains with it,
    since there I(z1;z2) is what it measures.  ``backend`` as in ``ntxent_loss``.
    """
    _check_pair(z1, z2, "z1", "z2", min_batch=2)
    backend = kernels.fused_backend(backend, z1.shape[0])
    if backend is None:
        return -infonce_lower_bound(cosine_similarity_scores(z1, z2, temperature))
    temperature = check_number(temperature, "temperature", positive=True)
    return kernels.infonce(z1, z2, temperature=temperature, shape="pairwise", symmetric=False, normalize=True,
                           backend=backend) - math.log(z1.shape[0])


def pairwise_infonce_loss_local(z1: torch.Tensor, z2: torch.Tensor, z1_all: torch.Tensor, z2_all: torch.Tensor,
                                row_offset: int, temperature: float = DEFAULT_TEMPERATURE,
                                backend: str = "auto") -> torch.Tensor:
    """One rank's share of ``pairwise_infonce_loss(z1_all, z2_all)``: the mean over this rank's rows z1 of their
    cross-entropy against all gathered z2_all, minus log N_all."""
    _check_pair(z1, z2, "z1", "z2")
    _check_pair(z1_all, z2_all, "z1_all", "z2_all", min_batch=2)
    temperature = check_number(temperature, "temperature", positive=True)
    backend = kernels.fused_backend(backend, z1_all.shape[0]) or "naive"
    return kernels.infonce_local(z1, z2, z1_all, z2_all, row_offset, temperature=temperature, shape="pairwise",
                                 symmetric=False, normalize=True, backend=backend,
                                 reduction="mean") - math.log(z1_all.shape[0])


def kl_conditional_bound(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
                         logvar2: torch.Tensor) -> torch.Tensor:
    """mean_i KL( N(mean1_i, e^logvar1_i) || N(mean2_i, e^logvar2_i) ): the batch estimate of the ``kl`` upper bound
    on I(v1;z1|v2) (row i is the pair (v1_i, v2_i) drawn from the joint)."""
    for a, name in ((logvar1, "logvar1"), (mean2, "mean2"), (logvar2, "logvar2")):
        _check_pair(mean1, a, "mean1", name)
    return gaussian_kl_diag(mean1, logvar1, mean2, logvar2).mean()


def club_conditional_bound(mean1: torch.Tensor, logvar1: torch.Tensor, z1: torch.Tensor,
                           mi_lower: torch.Tensor) -> torch.Tensor:
    """CLUB(v1 -> z1) - I_hat(z1;z2), the ``club`` upper bound on I(v1;z1|v2).

    CLUB uses the encoder's own density q(z|v1) = N(mean1(v1), e^logvar1(v1)) on all N(N-1) mismatched pairs;
    ``mi_lower`` is the lower bound on I(z1;z2) from the same batch.
    """
    _check_pair(mean1, logvar1, "mean1", "logvar1", min_batch=2)
    _check_pair(mean1, z1, "mean1", "z1")
    if not isinstance(mi_lower, torch.Tensor) or mi_lower.dim() != 0:
        raise TypeError(f"mi_lower must be a scalar tensor, got {mi_lower!r}")
    return club_upper_bound(gaussian_log_density_matrix(mean1, logvar1, z1)) - mi_lower


# ---------------------------------------------------------------------------------------------------------------
# Stochastic head
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class GaussianPosterior:
    """p(z | v) = N(mean, diag e^logvar), one row per input."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps (differentiable in mean and logvar)."""
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps


SIGMA_MODES = ("fixed", "learned", "amortized")


class GaussianPosteriorHead(nn.Module):
    """A stochastic Gaussian encoder head: mean = MLP(v) (``layers=0``: linear), sigma fixed or bounded.

    ``sigma``: a number > 0 (fixed, the default 1.0); ``"learned"`` (one sigma per output dimension, shared by all
    inputs, kept in [sigma_min, sigma_max]); ``"amortized"`` (sigma(v) from the network, kept in
    [sigma_min, sigma_max]).  Bounding matters: under the KL penalty a free sigma grows to shrink the KL (seen in
    MIB re-implementations).  ``head(v)`` gives the posterior; ``head.sample(v)`` a reparameterised draw in training
    mode and the deterministic mean in evaluation mode; ``head.encode(v)`` always the mean.
    """

    def __init__(self, in_dim: int, z_dim: int, hidden: int = 64, layers: int = 0, sigma: float | str = 1.0,
                 sigma_min: float = 0.05, sigma_max: float = 5.0, mean_on_sphere: bool = False):
        super().__init__()
        self.mean_on_sphere = bool(mean_on_sphere)
        self.in_dim = check_int(in_dim, "in_dim", 1)
        self.z_dim = check_int(z_dim, "z_dim", 1)
        check_int(hidden, "hidden", 1)
        self.layers = check_int(layers, "layers", 0)
        if isinstance(sigma, str):
            if sigma not in ("learned", "amortized"):
                raise ValueError(f"sigma must be a number > 0, 'learned' or 'amortized', got {sigma!r}")
            self.sigma_mode = sigma
            lo = check_number(sigma_min, "sigma_min", positive=True)
            hi = check_number(sigma_max, "sigma_max", positive=True)
            if hi <= lo:
                raise ValueError(f"sigma_max must be > sigma_min, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
            self.log_sigma_min, self.log_sigma_max = math.log(lo), math.log(hi)
            self.fixed_sigma = None
        else:
            self.sigma_mode = "fixed"
            self.fixed_sigma = check_number(sigma, "sigma", positive=True)
        out = 2 * self.z_dim if self.sigma_mode == "amortized" else self.z_dim
        self.net = mlp(self.in_dim, hidden, self.layers, out)
        if self.sigma_mode == "learned":
            # start at the geometric middle of the allowed range
            self.sigma_logit = nn.Parameter(torch.zeros(self.z_dim))

    def _place(self, mean: torch.Tensor) -> torch.Tensor:
        # on the unit sphere, KL(p1||p2) = |m1 - m2|^2 / (2 sigma^2) <= 2 / sigma^2: the penalty has a fixed scale
        return F.normalize(mean, dim=-1) if self.mean_on_sphere else mean

    def _bounded_logvar(self, raw: torch.Tensor) -> torch.Tensor:
        log_sigma = self.log_sigma_min + (self.log_sigma_max - self.log_sigma_min) * torch.sigmoid(raw)
        return 2.0 * log_sigma

    def forward(self, v: torch.Tensor) -> GaussianPosterior:
        check_matrix(v, "v", features=self.in_dim, finite=False)
        out = self.net(v)
        if self.sigma_mode == "amortized":
            mean, raw = out.chunk(2, dim=-1)
            return GaussianPosterior(self._place(mean), self._bounded_logvar(raw))
        out = self._place(out)
        if self.sigma_mode == "learned":
            logvar = self._bounded_logvar(self.sigma_logit).expand_as(out)
        else:
            logvar = torch.full_like(out, 2.0 * math.log(self.fixed_sigma))
        return GaussianPosterior(out, logvar)

    def encode(self, v: torch.Tensor) -> torch.Tensor:
        """The deterministic representation (the posterior mean)."""
        return self(v).mean

    def sample(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        post = self(v)
        return post.rsample(generator) if self.training else post.mean

    def sigma(self) -> torch.Tensor | None:
        """The current per-dimension sigma (None for the amortized mode, where it depends on the input)."""
        if self.sigma_mode == "fixed":
            return torch.full((self.z_dim,), self.fixed_sigma)
        if self.sigma_mode == "learned":
            return torch.exp(0.5 * self._bounded_logvar(self.sigma_logit)).detach()
        return None

    def linear_parameters(self):
        """``(weight [z, in], bias [z], sigma [z])`` of a linear head with input-independent sigma: the
        linear-Gaussian encoder z = W v + b + sigma * eps whose information is exact in the synthetic world."""
        if self.layers != 0 or self.sigma_mode == "amortized":
            raise ValueError("linear_parameters needs layers=0 and a fixed or learned (input-independent) sigma, "
                             f"got layers={self.layers}, sigma mode {self.sigma_mode!r}")
        lin = self.net[0]
        return lin.weight.detach().clone(), lin.bias.detach().clone(), self.sigma()

    def extra_repr(self) -> str:
        sig = self.fixed_sigma if self.sigma_mode == "fixed" else self.sigma_mode
        sphere = ", mean_on_sphere=True" if self.mean_on_sphere else ""
        return f"in_dim={self.in_dim}, z_dim={self.z_dim}, layers={self.layers}, sigma={sig}{sphere}"


# ---------------------------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SuperInfoTerms:
    total: torch.Tensor          # what the optimiser minimises
    contrastive: torch.Tensor    # the -I_hat term (or the estimator's training surrogate): the SimCLR loss
    mi_lower: torch.Tensor       # I_hat(z1;z2), nats
    superfluous_a: torch.Tensor  # upper bound on I(v1;z1|v2), nats
    superfluous_b: torch.Tensor  # upper bound on I(v2;z2|v1), nats
    lambda_a: float
    lambda_b: float

    def as_dict(self) -> dict:
        """Floats for logs."""
        return {k: (float(v.detach()) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}


class SuperInfoLoss(nn.Module):
    """L = -I_hat(z1;z2) + lambda_a U(v1;z1|v2) + lambda_b U(v2;z2|v1).

    ``lower_bound``: ``"ntxent"`` (SimCLR's NT-Xent over the 2N views, cosine similarities / ``temperature``; no
    parameters; ``mi_lower`` is then log(2N - 1) - loss), ``"pairwise"`` (the one-direction InfoNCE lower bound on
    I(z1;z2), as the exact-truth world uses it) or the name of a
    lower bound in the ``mi_toolkit`` registry (``infonce``, ``nwj``, ``js``, ``smile``, ``mine``, ...; its critic
    becomes a sub-module, so optimise ``loss.parameters()`` too; extra keyword arguments go to it).
    ``conditional``: ``"kl"`` or ``"club"`` (see the module docstring).  ``lambda_b`` defaults to ``lambda_a``.
    Negative lambdas (rewarding superfluous information) need ``allow_negative_lambda=True``.
    With lambda_a = lambda_b = 0, ``total`` is exactly the plain contrastive loss.  ``backend``: the NT-Xent path
    (``ntxent_loss``'s ``backend``).

    ``distributed=True`` (inside a torch.distributed group of W > 1 processes, each passing its n rows): the terms
    become this rank's share, so that their mean over ranks is the loss of the global batch of W*n rows, gradients
    included (DDP averages gradients over ranks).  NT-Xent scores the local rows against the gathered columns;
    a registry lower bound and ``club`` are computed on the gathered batch (identical on every rank); ``kl`` is a
    per-row mean and stays local.  Gathers keep gradients (``mi_toolkit.distributed.all_gather_with_grad``).

    ``loss(post1, post2)`` samples z1, z2 from the posteriors (reparameterised); pass ``z1=``, ``z2=`` to use your
    own samples.  Returns ``SuperInfoTerms`` with every term.
    """

    def __init__(self, z_dim: int, lambda_a: float = 0.0, lambda_b: float | None = None,
                 lower_bound: str = NTXENT, conditional: str = "kl", temperature: float | None = None,
                 allow_negative_lambda: bool = False, backend: str = "auto", distributed: bool = False,
                 **estimator_kwargs):
        super().__init__()
        kernels.fused_backend(backend, 0)   # validates the name
        self.backend = backend
        self.distributed = bool(distributed)
        self.z_dim = check_int(z_dim, "z_dim", 1)
        self.allow_negative_lambda = bool(allow_negative_lambda)
        self.lambda_a = self._check_lambda(lambda_a, "lambda_a")
        self.lambda_b = self.lambda_a if lambda_b is None else self._check_lambda(lambda_b, "lambda_b")
        if not isinstance(conditional, str) or conditional not in CONDITIONAL_BOUNDS:
            raise ValueError(f"unknown conditional bound {conditional!r}; valid: {', '.join(CONDITIONAL_BOUNDS)}")
        self.conditional = conditional
        if not isinstance(lower_bound, str):
            raise TypeError(f"lower_bound must be a name (str), got {type(lower_bound).__name__}")
        self.lower_bound = lower_bound
        if lower_bound in (NTXENT, PAIRWISE):
            if estimator_kwargs:
                raise TypeError(f"lower_bound {lower_bound!r} takes no estimator arguments, got "
                                f"{sorted(estimator_kwargs)}")
            self.temperature = check_number(DEFAULT_TEMPERATURE if temperature is None else temperature,
                                             "temperature", positive=True)
            self.estimator = None
        else:
            if temperature is not None:
                raise ValueError(f"temperature applies to lower_bound='ntxent' or 'pairwise' only, not {lower_bound!r}")
            valid = [n for n in mi_toolkit.available_estimators()
                     if mi_toolkit.estimators.ESTIMATORS[n][0].direction == "lower"]
            if lower_bound not in mi_toolkit.ESTIMATORS:
                raise ValueError(f"unknown lower bound {lower_bound!r}; valid: {', '.join([NTXENT, PAIRWISE] + valid)}")
            self.temperature = None
            self.estimator = mi_toolkit.estimator(lower_bound, self.z_dim, self.z_dim, **estimator_kwargs)
            if self.estimator.direction != "lower":
                raise ValueError(f"{lower_bound!r} is an {self.estimator.direction} bound, not a lower bound on "
                                 f"I(z1;z2); valid: {', '.join([NTXENT, PAIRWISE] + valid)}")

    def _check_lambda(self, value, name):
        value = check_number(value, name)
        if value < 0 and not self.allow_negative_lambda:
            raise ArgumentError(f"{name} = {value} is negative, which rewards superfluous information; pass "
                             "allow_negative_lambda=True (CLI: --allow-negative-lambda) if that is what you want")
        return value

    def mi_lower_bound(self, z1: torch.Tensor, z2: torch.Tensor, z1_all: torch.Tensor | None = None,
                       z2_all: torch.Tensor | None = None, row_offset: int = 0):
        """``(I_hat, contrastive_loss)`` on a batch of representation pairs (this rank's share when the gathered
        batch ``z1_all``, ``z2_all`` is given)."""
        if self.lower_bound == NTXENT:
            if z1_all is None:
                loss = ntxent_loss(z1, z2, self.temperature, backend=self.backend)
            else:
                loss = ntxent_loss_local(z1, z2, z1_all, z2_all, row_offset, self.temperature, backend=self.backend)
            return ntxent_mi_estimate(loss, z1.shape[0] if z1_all is None else z1_all.shape[0]), loss
        if self.lower_bound == PAIRWISE:
            if z1_all is None:
                loss = pairwise_infonce_loss(z1, z2, self.temperature, backend=self.backend)
            else:
                loss = pairwise_infonce_loss_local(z1, z2, z1_all, z2_all, row_offset, self.temperature,
                                                   backend=self.backend)
            return -loss, loss
        out = self.estimator(z1, z2) if z1_all is None else self.estimator(z1_all, z2_all)
        return out.mi, out.loss

    def forward(self, posterior1: GaussianPosterior, posterior2: GaussianPosterior, z1: torch.Tensor | None = None,
                z2: torch.Tensor | None = None, generator: torch.Generator | None = None, *,
                lambda_a: float | torch.Tensor | None = None,
                lambda_b: float | torch.Tensor | None = None) -> SuperInfoTerms:
        """Every term of the loss.  ``lambda_a``, ``lambda_b``: this step's weights (a schedule's or automatic
        lambda's; floats or 0-dim tensors, which keep the step free of host reads) instead of the module's."""
        for post, name in ((posterior1, "posterior1"), (posterior2, "posterior2")):
            if not isinstance(post, GaussianPosterior):
                raise TypeError(f"{name} must be a GaussianPosterior (the output of GaussianPosteriorHead), "
                                f"got {type(post).__name__}")
            check_matrix(post.mean, f"{name}.mean", features=self.z_dim, finite=False)
            _check_pair(post.mean, post.logvar, f"{name}.mean", f"{name}.logvar")
        _check_pair(posterior1.mean, posterior2.mean, "posterior1.mean", "posterior2.mean", min_batch=2)
        z1 = posterior1.rsample(generator) if z1 is None else z1
        z2 = posterior2.rsample(generator) if z2 is None else z2
        _check_pair(posterior1.mean, z1, "posterior1.mean", "z1")
        _check_pair(posterior2.mean, z2, "posterior2.mean", "z2")

        gather = self.distributed and is_distributed()
        if gather:
            mi_lower, contrastive = self.mi_lower_bound(z1, z2, all_gather_with_grad(z1), all_gather_with_grad(z2),
                                                        row_offset=rank() * z1.shape[0])
        else:
            mi_lower, contrastive = self.mi_lower_bound(z1, z2)
        if self.conditional == "kl":
            sup_a = kl_conditional_bound(posterior1.mean, posterior1.logvar, posterior2.mean, posterior2.logvar)
            sup_b = kl_conditional_bound(posterior2.mean, posterior2.logvar, posterior1.mean, posterior1.logvar)
        else:
            # CLUB averages over all N(N-1) mismatched pairs of the global batch: computed on the gathered rows
            everywhere = all_gather_with_grad if gather else (lambda t: t)
            sup_a = club_conditional_bound(everywhere(posterior1.mean), everywhere(posterior1.logvar),
                                           everywhere(z1), mi_lower)
            sup_b = club_conditional_bound(everywhere(posterior2.mean), everywhere(posterior2.logvar),
                                           everywhere(z2), mi_lower)
        lambda_a = self.lambda_a if lambda_a is None else lambda_a
        lambda_b = self.lambda_b if lambda_b is None else lambda_b
        total = contrastive
        # lambda = 0 (a float) leaves the contrastive loss untouched, bit for bit
        if isinstance(lambda_a, torch.Tensor) or lambda_a != 0.0:
            total = total + lambda_a * sup_a
        if isinstance(lambda_b, torch.Tensor) or lambda_b != 0.0:
            total = total + lambda_b * sup_b
        return SuperInfoTerms(total=total, contrastive=contrastive, mi_lower=mi_lower, superfluous_a=sup_a,
                              superfluous_b=sup_b, lambda_a=lambda_a, lambda_b=lambda_b)

    def extra_repr(self) -> str:
        lb = f"{self.lower_bound}(temperature={self.temperature:g})" if self.estimator is None else self.lower_bound
        return (f"lambda_a={self.lambda_a:g}, lambda_b={self.lambda_b:g}, lower_bound={lb}, "
                f"conditional={self.conditional!r}")

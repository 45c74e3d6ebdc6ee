"""MI bounds as pure functions.

Lower bounds take a score matrix ``scores[i, j] = f(x_i, y_j)``: the diagonal holds the N joint samples, the
N(N-1) off-diagonal entries stand for samples of p(x)p(y).  The positive pair is never counted among the
negatives (doing so pulls DV/SMILE/JS-type estimates down by up to log N at high MI).

Upper bounds take log-densities of a conditional ``log_q[i, j] = log q(y_j | x_i)``.

Everything works in the log domain (log-sum-exp), so no exp overflows at MI = 20 nats and beyond.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .validation import check_finite, check_number, check_scores, check_vector

__all__ = [
    "infonce_lower_bound",
    "nwj_lower_bound",
    "dv_lower_bound",
    "mine_lower_bound",
    "js_fgan_objective",
    "js_lower_bound",
    "smile_lower_bound",
    "ba_lower_bound",
    "doe_estimate",
    "club_upper_bound",
    "club_sample_upper_bound",
    "l1out_upper_bound",
    "gaussian_kl_diag",
    "vib_kl_upper_bound",
    "logmeanexp_offdiag",
    "infonce_cap",
    "diagonal_mask",
]


MINE_MAX_LOG_RATIO = 20.0  # cap on log(batch partition / moving average) in MINE's gradient weight


def diagonal_mask(n: int, device) -> torch.Tensor:
    """True on the diagonal (the positive pairs), False off it: ``masked_fill(mask, -inf)`` keeps the negatives."""
    return torch.eye(n, dtype=torch.bool, device=device)


def logmeanexp_offdiag(scores: torch.Tensor) -> torch.Tensor:
    """log( mean_{i != j} exp(scores[i, j]) ), computed with log-sum-exp."""
    n = scores.shape[0]
    masked = scores.masked_fill(diagonal_mask(n, scores.device), float("-inf"))
    return torch.logsumexp(masked.reshape(-1), dim=0) - math.log(n * (n - 1))


def infonce_cap(batch_size: int) -> float:
    """InfoNCE can never exceed log N."""
    return math.log(batch_size)


def infonce_lower_bound(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018): mean_i [S_ii - logsumexp_j S_ij] + log N  (<= log N for any scores)."""
    check_scores(scores)
    n = scores.shape[0]
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(n)


def nwj_lower_bound(scores: torch.Tensor) -> torch.Tensor:
    """NWJ / f-div (Nguyen, Wainwright & Jordan 2010): mean_i S_ii - e^{-1} mean_{i!=j} e^{S_ij}."""
    check_scores(scores)
    return scores.diagonal().mean() - torch.exp(logmeanexp_offdiag(scores) - 1.0)


def dv_lower_bound(scores: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan: mean_i S_ii - log mean_{i!=j} e^{S_ij}.  Always >= NWJ on the same scores."""
    check_scores(scores)
    return scores.diagonal().mean() - logmeanexp_offdiag(scores)


def mine_lower_bound(scores: torch.Tensor, log_running_mean: torch.Tensor | float | None,
                     ema_rate: float | None = None):
    """MINE (Belghazi et al. 2018): the DV value, and a surrogate whose gradient uses a moving average.

    ``log_running_mean`` is log of the moving average of mean_{i!=j} e^{S_ij} (None on the first step: the batch
    value).  With ``ema_rate`` (weight of the newest batch) this batch is first folded into the average, as in
    Belghazi et al.'s algorithm; without it the given average is used as it is.  Returns
    ``(value, surrogate, log_average)``: report ``value``, maximise ``surrogate`` (same value, gradient
    ``grad mean e^S / average``), and carry ``log_average`` (the average the weight used) to the next step.
    """
    check_scores(scores)
    if ema_rate is not None and not 0.0 < ema_rate <= 1.0:
        raise ValueError(f"ema_rate must be in (0, 1], got {ema_rate!r}")
    positive = scores.diagonal().mean()
    log_batch_mean = logmeanexp_offdiag(scores)
    value = positive - log_batch_mean
    log_batch = log_batch_mean.detach()
    if log_running_mean is None:
        log_average = log_batch
    else:
        log_average = torch.as_tensor(log_running_mean, dtype=scores.dtype, device=scores.device).detach()
        if ema_rate is not None:
            log_average = torch.logaddexp(math.log1p(-ema_rate) + log_average, math.log(ema_rate) + log_batch)
    # MINE's gradient is grad(mean e^S) / ema = (mean e^S / ema) * grad(log mean e^S): weight the log term by that
    # ratio (held constant).  The exponent is capped so a stale average after a jump in the scores cannot overflow.
    weight = torch.exp((log_batch - log_average).clamp(max=MINE_MAX_LOG_RATIO))
    surrogate = positive - weight * log_batch_mean
    surrogate = surrogate + (value - surrogate).detach()  # report the DV value, differentiate the surrogate
    return value, surrogate, log_average


def js_fgan_objective(scores: torch.Tensor) -> torch.Tensor:
    """The f-GAN Jensen-Shannon objective E_p[-softplus(-f)] - E_{p(x)p(y)}[softplus(f)] (not an MI value)."""
    check_scores(scores)
    n = scores.shape[0]
    positive = -F.softplus(-scores.diagonal()).mean()
    negative_sum = F.softplus(scores).sum() - F.softplus(scores.diagonal()).sum()
    return positive - negative_sum / (n * (n - 1))


def js_lower_bound(scores: torch.Tensor) -> torch.Tensor:
    """Train with JS, read with NWJ (Poole et al. 2019): value NWJ(f + 1), gradient of the JS objective.

    The JS-optimal critic is the log density ratio, so NWJ on f + 1 is tight at the optimum.
    """
    js = js_fgan_objective(scores)
    with torch.no_grad():
        value = nwj_lower_bound(scores + 1.0)
    return js + (value - js).detach()


def smile_lower_bound(scores: torch.Tensor, clip: float | None = 5.0) -> torch.Tensor:
    """SMILE (Song & Ermon 2020): DV with the partition term's scores clipped to [-clip, clip].

    As in the paper the critic is trained with the JS objective; the returned tensor has the clipped-DV value and
    the JS gradient.  ``clip=None`` gives plain DV values (still JS-trained).
    """
    check_number(clip, "clip (tau)", positive=True, allow_none=True)
    js = js_fgan_objective(scores)
    with torch.no_grad():
        clipped = scores if clip is None else scores.clamp(-clip, clip)
        value = scores.diagonal().mean() - logmeanexp_offdiag(clipped)
    return js + (value - js).detach()


def ba_lower_bound(log_q_joint: torch.Tensor, entropy_y: float | torch.Tensor) -> torch.Tensor:
    """Barber-Agakov: H(Y) + mean_i log q(y_i | x_i) <= I(X;Y) for any conditional q (exact H(Y) given)."""
    check_vector(log_q_joint, "log_q_joint")
    entropy_y = check_finite(torch.as_tensor(entropy_y, dtype=log_q_joint.dtype, device=log_q_joint.device),
                             "entropy_y")
    return entropy_y + log_q_joint.mean()


def doe_estimate(log_q_joint: torch.Tensor, log_q_marginal: torch.Tensor) -> torch.Tensor:
    """Difference of entropies (McAllester & Stratos 2020): mean log q(y|x) - mean log q(y).

    Both terms are cross-entropy estimates (upper bounds on their entropies), so the difference is an estimate,
    not a bound.
    """
    check_vector(log_q_joint, "log_q_joint")
    check_vector(log_q_marginal, "log_q_marginal", n=log_q_joint.shape[0])
    return log_q_joint.mean() - log_q_marginal.mean()


def club_upper_bound(log_q: torch.Tensor) -> torch.Tensor:
    """CLUB (Cheng et al. 2020): mean_i log q(y_i|x_i) - mean_{i != j} log q(y_j|x_i).

    ``log_q[i, j] = log q(y_j | x_i)``.  The negative term averages the N(N-1) independent pairs only, which makes
    the batch value an unbiased estimate of the CLUB bound (including the diagonal would shrink it by 1/N).
    """
    check_scores(log_q, "log_q")
    n = log_q.shape[0]
    diag = log_q.diagonal()
    negative = (log_q.sum() - diag.sum()) / (n * (n - 1))
    return diag.mean() - negative


def club_sample_upper_bound(log_q_joint: torch.Tensor, log_q_shuffled: torch.Tensor) -> torch.Tensor:
    """Sampled CLUB: mean_i log q(y_i|x_i) - mean_i log q(y_{pi(i)}|x_i) for a random derangement pi."""
    check_vector(log_q_joint, "log_q_joint")
    check_vector(log_q_shuffled, "log_q_shuffled", n=log_q_joint.shape[0])
    return log_q_joint.mean() - log_q_shuffled.mean()


def l1out_upper_bound(log_q: torch.Tensor) -> torch.Tensor:
    """Leave-one-out bound (Poole et al. 2019): mean_i [log q(y_i|x_i) - log mean_{j!=i} q(y_i|x_j)].

    An upper bound in expectation for any N >= 2 when q is the true conditional.
    """
    check_scores(log_q, "log_q")
    n = log_q.shape[0]
    # column i holds log q(y_i | x_j) over rows j; drop j == i
    masked = log_q.masked_fill(diagonal_mask(n, log_q.device), float("-inf"))
    log_mixture = torch.logsumexp(masked, dim=0) - math.log(n - 1)
    return (log_q.diagonal() - log_mixture).mean()


def gaussian_kl_diag(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL( N(mu1, diag e^logvar1) || N(mu2, diag e^logvar2) ) summed over the last dim, one value per row.

    Used for the conditional term: I(v1; z1 | v2) <= E KL(p(z1|v1) || p(z2|v2)) (multi-view information
    bottleneck).
    """
    shapes = {tuple(t.shape) for t in (mu1, logvar1, mu2, logvar2)}
    if len(shapes) != 1:
        raise ValueError(f"mu1, logvar1, mu2, logvar2 must share one shape, got {[tuple(t.shape) for t in (mu1, logvar1, mu2, logvar2)]}")
    for t, name in ((mu1, "mu1"), (logvar1, "logvar1"), (mu2, "mu2"), (logvar2, "logvar2")):
        check_finite(t, name)
    var_ratio = torch.exp(logvar1 - logvar2)
    mahalanobis = (mu1 - mu2).pow(2) * torch.exp(-logvar2)
    return 0.5 * (var_ratio + mahalanobis - 1.0 - (logvar1 - logvar2)).sum(dim=-1)


def vib_kl_upper_bound(mu: torch.Tensor, logvar: torch.Tensor, prior_mu=None, prior_logvar=None) -> torch.Tensor:
    """Variational information bottleneck: I(X; Z) <= E_x KL(p(z|x) || r(z)), r = N(prior_mu, e^prior_logvar)
    (standard normal by default), for a diagonal-Gaussian encoder p(z|x) = N(mu(x), e^logvar(x)).  A numeric prior
    is placed on the encoder's device, in its dtype."""
    prior_mu = (torch.zeros_like(mu) if prior_mu is None
                else torch.as_tensor(prior_mu, dtype=mu.dtype, device=mu.device).expand_as(mu))
    prior_logvar = (torch.zeros_like(logvar) if prior_logvar is None
                    else torch.as_tensor(prior_logvar, dtype=logvar.dtype, device=logvar.device).expand_as(logvar))
    return gaussian_kl_diag(mu, logvar, prior_mu, prior_logvar).mean()

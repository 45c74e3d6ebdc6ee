"""Critics make score matrices; Gaussian conditionals make log-density matrices.  Built by name with ``critic()``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_int

LOG_2PI = math.log(2 * math.pi)


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int, activation=nn.ReLU) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden``; layers=0 gives a single linear map."""
    dims = [in_dim] + [hidden] * layers
    modules = []
    for a, b in zip(dims[:-1], dims[1:]):
        modules += [nn.Linear(a, b), activation()]
    modules.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*modules)


class SeparableCritic(nn.Module):
    """f(x, y) = g(x)^T h(y): one matmul per batch for all N^2 pairs (Poole et al.'s 'separable').

    g and h are MLPs of the same shape; their weights are stacked as [2, in, out] so both run in one batched matmul
    per layer (half the kernel launches and optimizer tensors of two separate MLPs: small batches are
    overhead-bound).  The narrower input is zero-padded to the wider one for the first layer.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, layers: int = 2, embed_dim: int = 32):
        super().__init__()
        sizes = [max(x_dim, y_dim)] + [hidden] * layers + [embed_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight, bias = torch.empty(2, fan_in, fan_out), torch.empty(2, 1, fan_out)
            for branch, true_in in enumerate((x_dim, y_dim) if k == 0 else (fan_in, fan_in)):
                bound = 1.0 / math.sqrt(true_in)  # nn.Linear's default initialisation, per branch
                nn.init.uniform_(weight[branch], -bound, bound)
                nn.init.uniform_(bias[branch], -bound, bound)
                weight.data[branch, true_in:] = 0.0  # rows that only ever meet the zero padding
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))

    def _pad(self, v: torch.Tensor) -> torch.Tensor:
        return F.pad(v, (0, self.weights[0].shape[1] - v.shape[1]))

    def _stacked_mlp(self, stack: torch.Tensor, branches: slice) -> torch.Tensor:
        """The MLP layers on [branches, N, in]: one batched matmul per layer for all branches at once."""
        last = len(self.weights) - 1
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            stack = torch.baddbmm(bias[branches], stack, weight[branches])
            if k < last:
                stack = torch.relu(stack)
        return stack

    def embed(self, x: torch.Tensor, y: torch.Tensor):
        """(g(x), h(y)) for row-paired batches, both [N, embed_dim]."""
        if x.shape[0] != y.shape[0]:  # the stacked path needs equal row counts
            return self.g(x), self.h(y)
        pair = self._stacked_mlp(torch.stack([self._pad(x), self._pad(y)]), slice(None))
        return pair[0], pair[1]

    def _branch(self, v: torch.Tensor, branch: int) -> torch.Tensor:
        return self._stacked_mlp(self._pad(v).unsqueeze(0), slice(branch, branch + 1))[0]

    def g(self, x: torch.Tensor) -> torch.Tensor:
        return self._branch(x, 0)

    def h(self, y: torch.Tensor) -> torch.Tensor:
        return self._branch(y, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gx, hy = self.embed(x, y)
        return gx @ hy.T


class BilinearCritic(nn.Module):
    """f(x, y) = g(x)^T W h(y) with MLP encoders (layers=0: the linear x^T W y)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, layers: int = 0, embed_dim: int = 32):
        super().__init__()
        self.g = mlp(x_dim, hidden, layers, embed_dim) if layers > 0 else nn.Identity()
        self.h = mlp(y_dim, hidden, layers, embed_dim) if layers > 0 else nn.Identity()
        gx, hy = (embed_dim, embed_dim) if layers > 0 else (x_dim, y_dim)
        self.weight = nn.Parameter(torch.zeros(gx, hy))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(gx * hy))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.weight @ self.h(y).T


class QuadraticCritic(nn.Module):
    """f(x, y) = x^T W y + a.(x*x) + c.x + b.(y*y) + d.y: the family of the log density ratio of Gaussians with
    diagonal marginals (exact for the correlated-Gaussian tasks after the copula transform).  No hidden layers, so it
    cannot memorise rows the way an MLP critic does: the default of ``estimate()`` for representation-sized inputs
    (``hidden``, ``layers`` and ``embed_dim`` are accepted and ignored)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 0, layers: int = 0, embed_dim: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(x_dim, y_dim))   # from 0: gradient descent walks the ridge path
        self.quad_x = nn.Parameter(torch.zeros(x_dim))
        self.quad_y = nn.Parameter(torch.zeros(y_dim))
        self.lin_x = nn.Parameter(torch.zeros(x_dim))
        self.lin_y = nn.Parameter(torch.zeros(y_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        qx = (x * x) @ self.quad_x + x @ self.lin_x
        qy = (y * y) @ self.quad_y + y @ self.lin_y
        return x @ self.weight @ y.T + qx[:, None] + qy[None, :]


class ConcatCritic(nn.Module):
    """f(x, y) = MLP([x, y]) evaluated on all N^2 pairs: the most flexible critic, and N^2 network evaluations."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, layers: int = 2, embed_dim: int | None = None):
        super().__init__()
        self.net = mlp(x_dim + y_dim, hidden, layers, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        pairs = torch.cat([x.unsqueeze(1).expand(n, n, -1), y.unsqueeze(0).expand(n, n, -1)], dim=-1)
        return self.net(pairs).squeeze(-1)


CRITICS = {"separable": SeparableCritic, "bilinear": BilinearCritic, "concat": ConcatCritic,
           "quadratic": QuadraticCritic}


def critic(name: str, x_dim: int, y_dim: int, **kwargs) -> nn.Module:
    """Build a critic by name: one of ``separable``, ``bilinear``, ``concat``, ``quadratic``."""
    if name not in CRITICS:
        raise ValueError(f"unknown critic {name!r}; valid critics: {', '.join(sorted(CRITICS))}")
    check_int(x_dim, "x_dim")
    check_int(y_dim, "y_dim")
    return CRITICS[name](x_dim, y_dim, **kwargs)


def gaussian_log_density_matrix(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """M[i, j] = log N(y_j; mu_i, diag e^{logvar_i}), with three matmuls instead of an [N, N, d] tensor."""
    precision = torch.exp(-logvar)  # [N, d]
    quad = (y * y) @ precision.T - 2.0 * (y @ (mu * precision).T) + (mu * mu * precision).sum(1, keepdim=True).T
    norm = logvar.sum(1) + mu.shape[1] * LOG_2PI  # per conditioning row i
    return -0.5 * (quad.T + norm.unsqueeze(1))


def gaussian_log_density(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log N(y_i; mu_i, diag e^{logvar_i}) per row."""
    return -0.5 * (((y - mu) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


class GaussianConditional(nn.Module):
    """q(y | x) = N(mu(x), diag sigma^2(x)); log-variance kept in [min_logvar, max_logvar] by a tanh squash
    (unbounded variances blow up or collapse under maximum likelihood)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, layers: int = 2,
                 min_logvar: float = -10.0, max_logvar: float = 5.0, linear_skip: bool = True):
        super().__init__()
        self.net = mlp(x_dim, hidden, layers, 2 * y_dim)
        # a linear path beside the MLP: near-linear conditionals are learned exactly instead of approximately
        self.skip = nn.Linear(x_dim, 2 * y_dim, bias=False) if linear_skip else None
        self.min_logvar, self.max_logvar = min_logvar, max_logvar

    def forward(self, x: torch.Tensor):
        out = self.net(x) if self.skip is None else self.net(x) + self.skip(x)
        mu, raw = out.chunk(2, dim=-1)
        mid, half = (self.max_logvar + self.min_logvar) / 2, (self.max_logvar - self.min_logvar) / 2
        return mu, mid + half * torch.tanh(raw / half)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y_i | x_i), one per row."""
        mu, logvar = self(x)
        return gaussian_log_density(mu, logvar, y)

    def log_prob_matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y_j | x_i) for all pairs, shape [N, N]."""
        mu, logvar = self(x)
        return gaussian_log_density_matrix(mu, logvar, y)


class MixtureConditional(nn.Module):
    """q(y | x) = sum_k pi_k(x) N(mu_k(x), diag sigma_k^2(x)): a small mixture-density network (Bishop 1994), so the
    variational estimators (BA, DoE, CLUB, L1Out) can fit skewed, bimodal or heavy-shouldered conditionals that one
    Gaussian cannot.  One MLP gives all K means, log-variances (tanh-squashed as in ``GaussianConditional``) and
    mixing logits; a linear path beside it feeds the means.  ``components=1`` is a Gaussian conditional."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, layers: int = 2, components: int = 4,
                 min_logvar: float = -10.0, max_logvar: float = 5.0, linear_skip: bool = True):
        super().__init__()
        self.components = check_int(components, "components")
        self.y_dim = y_dim
        k = self.components
        self.net = mlp(x_dim, hidden, layers, k * (2 * y_dim + 1))
        self.skip = nn.Linear(x_dim, y_dim, bias=False) if linear_skip else None
        self.min_logvar, self.max_logvar = min_logvar, max_logvar
        with torch.no_grad():   # spread the initial means so the components do not start identical
            last = self.net[-1]
            offsets = torch.linspace(-1.0, 1.0, k) if k > 1 else torch.zeros(1)
            last.bias.view(k, 2 * y_dim + 1)[:, :y_dim] += offsets[:, None]

    def forward(self, x: torch.Tensor):
        """(log_pi [N, K], mu [N, K, d], logvar [N, K, d])."""
        out = self.net(x).view(x.shape[0], self.components, 2 * self.y_dim + 1)
        mu, raw, logits = out[..., :self.y_dim], out[..., self.y_dim:2 * self.y_dim], out[..., -1]
        if self.skip is not None:
            mu = mu + self.skip(x).unsqueeze(1)
        mid, half = (self.max_logvar + self.min_logvar) / 2, (self.max_logvar - self.min_logvar) / 2
        return torch.log_softmax(logits, dim=-1), mu, mid + half * torch.tanh(raw / half)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_pi, mu, logvar = self(x)
        per = gaussian_log_density(mu, logvar, y.unsqueeze(1))           # [N, K]
        return torch.logsumexp(log_pi + per, dim=-1)

    def log_prob_matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_pi, mu, logvar = self(x)
        per = torch.stack([gaussian_log_density_matrix(mu[:, k], logvar[:, k], y) + log_pi[:, k:k + 1]
                           for k in range(self.components)])            # [K, N, N]
        return torch.logsumexp(per, dim=0)


class MixtureMarginal(nn.Module):
    """q(y) = sum_k pi_k N(m_k, diag s_k^2), learned: DoE's marginal model when the conditional is a mixture."""

    def __init__(self, y_dim: int, components: int = 4):
        super().__init__()
        k = check_int(components, "components")
        self.mu = nn.Parameter(torch.linspace(-1.0, 1.0, k)[:, None].repeat(1, y_dim) if k > 1 else torch.zeros(1, y_dim))
        self.logvar = nn.Parameter(torch.zeros(k, y_dim))
        self.logits = nn.Parameter(torch.zeros(k))

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        per = gaussian_log_density(self.mu.unsqueeze(0), self.logvar.unsqueeze(0), y.unsqueeze(1))   # [N, K]
        return torch.logsumexp(torch.log_softmax(self.logits, 0) + per, dim=-1)


class GaussianMarginal(nn.Module):
    """q(y) = N(m, diag s^2) with learned m, log s^2: the marginal model of the DoE estimator."""

    def __init__(self, y_dim: int):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(y_dim))
        self.logvar = nn.Parameter(torch.zeros(y_dim))

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        return gaussian_log_density(self.mu.expand_as(y), self.logvar.expand_as(y), y)

"""The Multi-View Information Bottleneck (Federici et al. 2020): maximise I(z1; z2) on posterior samples and
penalise beta * D_SKL(p(z1|v1) || p(z2|v2)), the symmetrised KL (KL both ways, halved), with beta increased
exponentially (from 1e-3 beta to beta over the ramp, after the warm-up), as the paper's code does.  Here beta is
``--lambda-a``; the contrastive estimator is the trainer's (NT-Xent by default; the paper used a separable critic)."""
from .base import Method

METHOD = Method("mib", "Multi-View Information Bottleneck: noisy z, beta (--lambda-a) times the symmetrised KL "
                "between the views' posteriors, beta raised exponentially", deterministic=False, penalised=True,
                symmetric_beta=True, ramp="exponential", conditionals=("kl",))

"""SimCLR (Chen et al. 2020): NT-Xent over the 2N views of the head's means, nothing else: deterministic, as the
paper's projection head is.  The reference every other method is compared with."""
from .base import Method

METHOD = Method("simclr", "NT-Xent on the head's means, deterministic (SimCLR)", deterministic=True,
                penalised=False)

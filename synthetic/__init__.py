"""Synthetic data with known mutual information."""
from .tasks import (
    TRANSFORMS,
    Asinh,
    CorrelatedGaussian,
    Cubic,
    HalfCube,
    RandomRotation,
    Staircase,
    StudentT,
    Transform,
    make_transform,
    rho_for_mi,
    student_t_mi_correction,
)

TASKS = {"gaussian": CorrelatedGaussian, "student-t": StudentT}

__all__ = [
    "TASKS", "TRANSFORMS", "Asinh", "CorrelatedGaussian", "Cubic", "HalfCube", "RandomRotation", "Staircase",
    "StudentT", "Transform", "make_transform", "rho_for_mi", "student_t_mi_correction",
]

from .multiview import (  # noqa: E402
    ConditionalGaussian,
    LinearGaussianEncoder,
    MultiViewSample,
    MultiViewWorld,
    NonlinearMultiViewWorld,
    gaussian_conditional_mi,
    gaussian_entropy,
    gaussian_kl,
    gaussian_mi,
    random_invertible_matrix,
)

__all__ += [
    "ConditionalGaussian", "LinearGaussianEncoder", "MultiViewSample", "MultiViewWorld", "NonlinearMultiViewWorld",
    "gaussian_conditional_mi", "gaussian_entropy", "gaussian_kl", "gaussian_mi", "random_invertible_matrix",
]

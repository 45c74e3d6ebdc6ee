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

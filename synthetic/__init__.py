"""Synthetic data with known mutual information.

``synthetic.gaussian``: Gaussian closed forms.  ``synthetic.tasks``: the task protocols (``MITask``,
``ConditionalMITask``), the tasks, MI-preserving transforms (``Transformed`` wraps any task) and the ``Staircase``.
``synthetic.multiview``: the multi-view worlds.  ``synthetic.bench`` / ``synthetic.cli``: the bias benchmark and the
``mi-toolkit`` command.
"""
from .gaussian import (
    gaussian_conditional_mi,
    gaussian_entropy,
    gaussian_kl,
    gaussian_mi,
    random_invertible_matrix,
    rho_for_mi,
)
from .multiview import (EntangledMultiViewWorld, LinearGaussianEncoder, MultiViewSample, MultiViewWorld,
                        NonlinearMultiViewWorld)
from .tasks import (
    TRANSFORMS,
    AdditiveNoise,
    Bimodal,
    Multinormal,
    NormalCDF,
    Spiral,
    SwissRoll,
    Wiggly,
    Asinh,
    ConditionalGaussian,
    ConditionalMITask,
    CorrelatedGaussian,
    Cubic,
    HalfCube,
    MITask,
    RandomRotation,
    Staircase,
    StudentT,
    Transform,
    Transformed,
    make_transform,
    student_t_mi_correction,
)

TASKS = {"gaussian": CorrelatedGaussian, "student-t": StudentT}

__all__ = [
    "TASKS", "TRANSFORMS", "Asinh", "CorrelatedGaussian", "Cubic", "HalfCube", "RandomRotation", "Staircase",
    "StudentT", "Transform", "make_transform", "rho_for_mi", "student_t_mi_correction",
    "MITask", "ConditionalMITask", "Transformed", "AdditiveNoise", "Multinormal", "NormalCDF", "Wiggly", "Bimodal",
    "Spiral", "SwissRoll",
    "ConditionalGaussian", "LinearGaussianEncoder", "MultiViewSample", "EntangledMultiViewWorld", "MultiViewWorld", "NonlinearMultiViewWorld",
    "gaussian_conditional_mi", "gaussian_entropy", "gaussian_kl", "gaussian_mi", "random_invertible_matrix",
]

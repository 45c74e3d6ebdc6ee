"""Synthetic data with known mutual information.

``synthetic.gaussian``: Gaussian closed forms.  ``synthetic.tasks``: the task protocols (``MITask``,
``ConditionalMITask``), the tasks, ``Transformed`` (wraps any task) and the ``Staircase``.  ``synthetic.transforms``:
the MI-preserving transforms (with their Jacobians, where they have one).
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
    AdditiveNoise,
    ConditionalGaussian,
    ConditionalMITask,
    CorrelatedGaussian,
    MITask,
    Multinormal,
    Staircase,
    StudentT,
    Transformed,
    student_t_mi_correction,
)
from .transforms import (
    TRANSFORMS,
    Asinh,
    Bimodal,
    Cubic,
    HalfCube,
    Identity,
    JacobianUnavailableError,
    NormalCDF,
    RandomRotation,
    Spiral,
    SwissRoll,
    Transform,
    Wiggly,
    make_transform,
)

TASKS = {"gaussian": CorrelatedGaussian, "student-t": StudentT}

__all__ = [
    "TASKS", "TRANSFORMS", "Asinh", "CorrelatedGaussian", "Cubic", "HalfCube", "RandomRotation", "Staircase",
    "StudentT", "Transform", "make_transform", "rho_for_mi", "student_t_mi_correction",
    "MITask", "ConditionalMITask", "Transformed", "AdditiveNoise", "Multinormal", "NormalCDF", "Wiggly", "Bimodal",
    "Spiral", "SwissRoll", "Identity", "JacobianUnavailableError",
    "ConditionalGaussian", "LinearGaussianEncoder", "MultiViewSample", "EntangledMultiViewWorld", "MultiViewWorld", "NonlinearMultiViewWorld",
    "gaussian_conditional_mi", "gaussian_entropy", "gaussian_kl", "gaussian_mi", "random_invertible_matrix",
]

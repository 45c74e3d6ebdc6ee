"""Mutual-information estimators, each checked against known truth.

    import mi_toolkit
    est = mi_toolkit.estimator("smile", x_dim, y_dim)          # an nn.Module: est(x, y).mi, .loss
    res = mi_toolkit.estimate(x, y, "smile")                   # fit on samples, report with its uncertainty
    res = mi_toolkit.estimate(x, y, "ksg")                     # classical baselines: ksg, gaussian
    res = mi_toolkit.estimate_cmi(x, y, z)                     # conditional MI I(X;Y|Z): KSG-CMI (or "gaussian")
    res = mi_toolkit.estimate(x, labels, "ksg", discrete_y=True)   # mixed (Ross 2014); "plugin": both discrete
    with mi_toolkit.value_checks(False): ...                   # no NaN/inf scans (no device syncs) in here
"""
from . import bounds, critics
from .bounds import (
    ba_lower_bound,
    club_sample_upper_bound,
    club_upper_bound,
    doe_estimate,
    dv_lower_bound,
    gaussian_kl_diag,
    infonce_lower_bound,
    js_lower_bound,
    l1out_upper_bound,
    mine_lower_bound,
    nwj_lower_bound,
    smile_lower_bound,
    vib_kl_upper_bound,
)
from .critics import critic
from .estimators import ESTIMATORS, EstimatorOutput, MIEstimator, available_estimators, estimator
from .classical import CLASSICAL, gaussian_plugin_mi, ksg_mi
from .conditional import estimate_cmi, estimate_discrete, gaussian_cmi, ksg_cmi
from .discrete import mixed_ksg_mi, plugin_mi
from .fit import EstimationFailed, MIEstimateWarning, MIResult, estimate
from .preprocess import copula_normal_scores
from .validation import value_checks, value_checks_enabled

try:        # the one version: pyproject.toml's, as installed
    from importlib.metadata import PackageNotFoundError, version as _installed_version
    __version__ = _installed_version("superinfo-mi-toolkit")
except PackageNotFoundError:    # a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "bounds", "critics", "critic", "estimator", "estimate", "available_estimators", "ESTIMATORS",
    "EstimatorOutput", "MIEstimator", "MIResult", "MIEstimateWarning", "EstimationFailed", "CLASSICAL", "ksg_mi",
    "gaussian_plugin_mi", "copula_normal_scores", "estimate_cmi", "estimate_discrete", "ksg_cmi", "gaussian_cmi",
    "plugin_mi", "mixed_ksg_mi",
    "infonce_lower_bound", "nwj_lower_bound", "dv_lower_bound", "mine_lower_bound", "js_lower_bound",
    "smile_lower_bound", "ba_lower_bound", "doe_estimate", "club_upper_bound", "club_sample_upper_bound",
    "l1out_upper_bound", "gaussian_kl_diag", "vib_kl_upper_bound", "value_checks", "value_checks_enabled",
]

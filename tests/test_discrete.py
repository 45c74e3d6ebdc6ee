"""Discrete variables: the plug-in MI (Miller-Madow optional) on known joint tables, Ross's mixed k-NN estimator on
a Gaussian mixture with its MI by quadrature, and ksg's refusal of tied (discrete) columns."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

import mi_toolkit
from mi_toolkit.discrete import mixed_ksg_mi, plugin_mi, tied_fraction

TABLE = np.array([[0.30, 0.05, 0.05],
                  [0.02, 0.20, 0.08],
                  [0.05, 0.05, 0.20]])


def exact_mi(table):
    px, py = table.sum(1, keepdims=True), table.sum(0, keepdims=True)
    nz = table > 0
    return float(np.sum(table[nz] * np.log(table[nz] / (px * py)[nz])))


def rows_of(table, n):
    """Rows whose empirical joint table is exactly ``table`` (n * table must be integers)."""
    counts = np.rint(table * n).astype(int)
    assert counts.sum() == n
    x = np.repeat(np.arange(table.shape[0]).repeat(table.shape[1]), counts.ravel())
    y = np.repeat(np.tile(np.arange(table.shape[1]), table.shape[0]), counts.ravel())
    return x, y


def test_plugin_on_an_exact_table_is_the_exact_mi():
    x, y = rows_of(TABLE, 1000)
    assert plugin_mi(x, y) == pytest.approx(exact_mi(TABLE), abs=1e-12)
    assert plugin_mi(x.astype(float) * 7 - 2, y + 100) == pytest.approx(exact_mi(TABLE), abs=1e-12)   # labels only


def test_plugin_from_samples_of_a_known_table():
    rng = np.random.default_rng(0)
    cells = rng.choice(TABLE.size, size=5000, p=TABLE.ravel())
    x, y = np.divmod(cells, TABLE.shape[1])
    truth = exact_mi(TABLE)
    for result in (mi_toolkit.estimate(x, y, "plugin"),
                   mi_toolkit.estimate(x, y, "ksg", discrete_x=True, discrete_y=True, miller_madow=True)):
        assert result.direction == "estimate" and not result.failed and result.stderr > 0
        assert abs(result.mi - truth) <= max(0.1, 0.1 * truth)
    assert mi_toolkit.estimate(x, y, "plugin", miller_madow=True).estimator == "plugin-mm"


def test_miller_madow_removes_most_of_the_plugin_bias():
    rng = np.random.default_rng(1)
    plug, mm = [], []
    for _ in range(20):     # independent 10 x 10 categories, 400 rows: plug-in bias ~ (100 - 10 - 10 + 1) / 800
        x, y = rng.integers(0, 10, 400), rng.integers(0, 10, 400)
        plug.append(plugin_mi(x, y))
        mm.append(plugin_mi(x, y, miller_madow=True))
    assert np.mean(plug) > 0.08
    assert abs(np.mean(mm)) < 0.3 * np.mean(plug)


def test_bool_and_multi_column_discrete_variables():
    rng = np.random.default_rng(2)
    a = rng.random(3000) < 0.5
    b = a ^ (rng.random(3000) < 0.1)       # a binary symmetric channel with flip probability 0.1
    truth = math.log(2) - stats.entropy([0.1, 0.9])
    result = mi_toolkit.estimate(a, b, "plugin")
    assert result.mi == pytest.approx(truth, abs=0.03)
    pair = np.stack([a, rng.random(3000) < 0.5], 1)      # (a, noise) as one 4-category variable: same MI
    assert plugin_mi(pair, b) == pytest.approx(plugin_mi(a, b), abs=0.01)


def mixture_mi(means, weights, sd=1.0):
    """I(C; Y) for Y | C = c ~ N(means[c], sd^2): H(Y) by quadrature minus H(Y | C)."""
    def density(t):
        return sum(w * stats.norm.pdf(t, m, sd) for m, w in zip(means, weights))
    lo, hi = min(means) - 12 * sd, max(means) + 12 * sd
    h_y = integrate.quad(lambda t: -density(t) * math.log(max(density(t), 1e-300)), lo, hi, limit=200)[0]
    return h_y - 0.5 * math.log(2 * math.pi * math.e * sd ** 2)


@pytest.mark.parametrize("means, weights", [((0.0, 2.0), (0.5, 0.5)), ((-2.0, 0.0, 1.5), (0.2, 0.5, 0.3)),
                                            ((0.0, 0.5), (0.7, 0.3))])
def test_mixed_estimator_on_a_gaussian_mixture(means, weights):
    rng = np.random.default_rng(3)
    c = rng.choice(len(means), size=5000, p=weights)
    y = rng.standard_normal(5000) + np.asarray(means)[c]
    truth = mixture_mi(means, weights)
    result = mi_toolkit.estimate(c, y, "ksg", discrete_x=True)
    assert result.estimator == "ksg-mixed" and not result.failed
    assert abs(result.mi - truth) <= max(0.1, 0.1 * truth), (result.mi, truth)
    swapped = mi_toolkit.estimate(y[:, None], c, "ksg", discrete_y=True)     # either side may be the discrete one
    assert swapped.mi == result.mi


def test_mixed_estimator_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.feature_selection")
    rng = np.random.default_rng(4)
    c = rng.choice(3, size=2000, p=(0.2, 0.5, 0.3))
    y = rng.standard_normal(2000) + np.array([-2.0, 0.0, 1.5])[c]
    ours = mixed_ksg_mi(y, c, k=3)
    theirs = sklearn.mutual_info_classif(y[:, None], c, n_neighbors=3, random_state=0)[0]
    assert ours == pytest.approx(theirs, abs=2e-3)


def test_ksg_refuses_tied_columns_and_says_why():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2000, 1)).astype(float)
    y = x + rng.standard_normal((2000, 1))
    with pytest.warns(mi_toolkit.MIEstimateWarning, match="discrete_x=True"):
        result = mi_toolkit.estimate(x, y, "ksg")
    assert result.failed and math.isnan(result.mi)
    assert "tied" in result.failure and "critic" not in result.failure and "lr" not in result.failure
    with pytest.raises(mi_toolkit.EstimationFailed, match="x has 100% of its rows tied"):
        mi_toolkit.estimate(x, y, "ksg", on_failure="raise")
    assert not mi_toolkit.estimate(x, y, "ksg", discrete_x=True).failed      # what the message says to do
    assert not mi_toolkit.estimate(x, y, "gaussian").failed                  # the covariance has no such problem


def test_a_few_ties_are_a_warning_not_a_refusal():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((2000, 1)), rng.standard_normal((2000, 1))
    x[:30] = 0.0                                            # 1.5% of the rows tied
    assert tied_fraction(x) == pytest.approx(0.015)
    with pytest.warns(mi_toolkit.MIEstimateWarning, match="1.5% of its rows tied"):
        result = mi_toolkit.estimate(x, y, "ksg")
    assert not result.failed
    assert tied_fraction(rng.standard_normal((5000, 2))) == 0.0


def test_plugin_on_continuous_data_warns():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal(500), rng.integers(0, 2, 500)
    with pytest.warns(mi_toolkit.MIEstimateWarning, match="500 distinct values"):
        mi_toolkit.estimate(x, y, "plugin")


def test_discrete_argument_errors():
    x, y = np.zeros((100, 1)), np.ones((100, 1))
    with pytest.raises(ValueError, match="discrete_x / discrete_y work with ksg"):
        mi_toolkit.estimate(x, y, "smile", discrete_x=True)
    with pytest.raises(TypeError, match="discrete_y must be True or False"):
        mi_toolkit.estimate(x, y, "ksg", discrete_y="yes")
    with pytest.raises(TypeError, match="unsupported argument"):
        mi_toolkit.estimate(x, y, "plugin", k=3)
    with pytest.raises(ValueError, match="same batch size"):
        mi_toolkit.estimate(x, y[:50], "plugin")
    with pytest.raises(ValueError, match="valid estimators: .*plugin"):
        mi_toolkit.estimate(x, y, "plugn")

"""The SimCLR-appendix linear protocol (L-BFGS logistic regression, L2 chosen on a validation split) against
scikit-learn's LogisticRegression on the same features, and the bootstrap interval against the binomial one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from superinfo.trainer.logreg import bootstrap_ci, fit_logistic, logreg_top1, validation_split


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = torch.as_tensor(x[order], dtype=torch.float32), torch.as_tensor(y[order])
    return x[:1400], y[:1400], x[1400:], y[1400:]


def test_fit_matches_scikit_learn_logistic_regression(digits):
    from sklearn.linear_model import LogisticRegression
    xtr, ytr, xte, yte = digits
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    for l2 in (1e-3, 1e-1):
        w, b = fit_logistic(xtr, ytr, 10, l2)
        ours = (xte.double() @ w.T + b).argmax(1).numpy()
        sk = LogisticRegression(C=1 / (l2 * len(ytr)), max_iter=5000, tol=1e-10).fit(xtr.numpy(), ytr.numpy())
        assert (ours == sk.predict(xte.numpy())).mean() >= 0.99, l2
        assert np.abs(w.numpy() - sk.coef_).max() < 2e-2 * np.abs(sk.coef_).max(), l2


def test_protocol_chooses_l2_on_validation_and_reads_test_once(digits, monkeypatch):
    xtr, ytr, xte, yte = digits
    import superinfo.trainer.logreg as logreg
    seen = []
    real = logreg.correct_rows
    monkeypatch.setattr(logreg, "correct_rows", lambda w, b, x, y: seen.append(len(y)) or real(w, b, x, y))
    r = logreg_top1(xtr, ytr, xte, yte, l2_grid=(1e-4, 1e-2, 1.0))
    fit_rows, val_rows = validation_split(ytr)
    assert set(fit_rows.tolist()).isdisjoint(val_rows.tolist()) and len(fit_rows) + len(val_rows) == len(ytr)
    assert seen.count(len(yte)) == 1                       # the test split scored once, after the choice
    assert r["val_top1"] == max(r["val_curve"].values()) and r["l2"] in (1e-4, 1e-2, 1.0)
    assert 0.93 < r["top1"] <= 1 and r["top1_ci95"][0] < r["top1"] < r["top1_ci95"][1]


def test_bootstrap_interval_matches_the_binomial_one():
    rng = np.random.default_rng(1)
    correct = torch.as_tensor(rng.random(2000) < 0.8)
    lo, hi = bootstrap_ci(correct, n_boot=4000)
    p = float(correct.double().mean())
    half = 1.96 * np.sqrt(p * (1 - p) / len(correct))
    assert lo == pytest.approx(p - half, abs=3e-3) and hi == pytest.approx(p + half, abs=3e-3)

"""The metrics' linear models against scikit-learn on the same data."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.svm import LinearSVC

from trainers.metrics.linear import fit_linear_svc, fit_logistic_regression, macro_roc_auc, roc_auc


def _data(n=600, d=3, k=4, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(size=(n, d)) * noise, y


def test_logistic_regression_matches_sklearn():
    x, y = _data()
    ours = fit_logistic_regression(x, y)
    ref = LogisticRegression(tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(ours.weights.numpy(), ref.coef_, atol=2e-4)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-4)
    assert ours.accuracy(x, y) == pytest.approx(ref.score(x, y), abs=2e-3)


@pytest.mark.parametrize("k", [2, 4])
def test_linear_svc_matches_sklearn(k):
    x, y = _data(k=k, d=1, seed=k, noise=2.0)
    ours = fit_linear_svc(x, y, c=0.01)
    ref = LinearSVC(C=0.01, class_weight="balanced", tol=1e-10, max_iter=100_000).fit(x, y)
    np.testing.assert_allclose(ours.weights.numpy().ravel(), ref.coef_.ravel(), atol=1e-3)
    np.testing.assert_allclose(ours.bias.numpy().ravel(), ref.intercept_.ravel(), atol=1e-3)
    assert np.mean(ours.predict(x) == ref.predict(x)) > 0.99


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounding makes ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    x, y = _data()
    clf = fit_logistic_regression(x, y)
    expected = roc_auc_score(y, clf.predict_proba(x), multi_class="ovr", average="macro")
    assert macro_roc_auc(y, clf.predict_proba(x), clf.classes) == pytest.approx(expected)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_one_feature_newton_svc_matches_lbfgs_and_sklearn(k):
    from trainers.metrics.linear import fit_linear_svc_1d

    x, y = _data(k=k, d=1, seed=10 + k, noise=2.0)
    newton = fit_linear_svc_1d(x[:, 0], y, c=0.01)
    lbfgs = fit_linear_svc(x, y, c=0.01)
    ref = LinearSVC(C=0.01, class_weight="balanced", tol=1e-10, max_iter=100_000).fit(x, y)
    np.testing.assert_allclose(newton.weights.numpy().ravel(), lbfgs.weights.numpy().ravel(), atol=1e-6)
    np.testing.assert_allclose(newton.bias.numpy().ravel(), ref.intercept_.ravel(), atol=1e-3)
    assert np.mean(newton.predict(x) == ref.predict(x)) > 0.99

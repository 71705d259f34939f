"""Small linear models the metrics need, in torch (float64, full-batch L-BFGS).

They reproduce the scikit-learn estimators disentanglement_lib calls, without
depending on scikit-learn:

- :func:`fit_logistic_regression` — ``LogisticRegression()`` defaults: multinomial
  softmax, L2 penalty ``‖W‖²/(2C)`` with C = 1 on the weights (not the intercept),
  summed (not averaged) log-loss.
- :func:`fit_linear_svc` — ``LinearSVC(C, class_weight="balanced")``: one-vs-rest,
  squared hinge, ``½‖w‖² + C Σ_i s_i max(0, 1 − y_i f(x_i))²`` with liblinear's
  intercept treated as a regularised feature of value 1, balanced sample weights
  ``n / (n_classes · n_c)`` (in one-vs-rest only on the positive class, as liblinear
  does); prediction is the argmax of the decision functions.
- :func:`roc_auc` — area under the ROC curve from ranks (Mann–Whitney), ties averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _lbfgs(params: list[torch.Tensor], closure, max_iter: int = 200) -> None:
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )
    optimizer.step(closure)


@dataclass
class LinearClassifier:
    weights: torch.Tensor  # [classes, features]
    bias: torch.Tensor  # [classes]
    classes: np.ndarray

    def decision(self, x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
        return (xt @ self.weights.T + self.bias).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = self.decision(x)
        if len(self.classes) == 2 and scores.shape[1] == 1:
            return self.classes[(scores[:, 0] > 0).astype(int)]
        return self.classes[scores.argmax(1)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.decision(x)), dim=1).numpy()

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, c: float = 1.0, max_iter: int = 100) -> LinearClassifier:
    """Multinomial logistic regression with L2 penalty 1/(2C)·‖W‖² (scikit-learn's defaults)."""
    classes, labels = np.unique(np.asarray(y), return_inverse=True)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    yt = torch.as_tensor(labels)
    w = torch.zeros(len(classes), xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:
        w.grad = b.grad = None
        loss = torch.nn.functional.cross_entropy(xt @ w.T + b, yt, reduction="sum") + (w**2).sum() / (2 * c)
        loss.backward()
        return loss

    _lbfgs([w, b], closure, max_iter)
    return LinearClassifier(w.detach(), b.detach(), classes)


def fit_linear_svc(
    x: np.ndarray, y: np.ndarray, c: float = 0.01, balanced: bool = True, max_iter: int = 200
) -> LinearClassifier:
    """One-vs-rest squared-hinge linear SVM (scikit-learn's ``LinearSVC``; see the module docstring)."""
    classes, labels = np.unique(np.asarray(y), return_inverse=True)
    targets_np, weights_np = _svc_targets(labels, len(classes), balanced)
    targets, weights = torch.as_tensor(targets_np), torch.as_tensor(weights_np)  # [n, machines]
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    xt = torch.cat([xt, torch.ones(len(labels), 1, dtype=torch.float64)], 1)  # liblinear's intercept feature
    w = torch.zeros(targets.shape[1], xt.shape[1], dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:
        w.grad = None
        margins = torch.clamp(1.0 - targets * (xt @ w.T), min=0.0)
        loss = 0.5 * (w**2).sum() + c * (weights * margins**2).sum()
        loss.backward()
        return loss

    _lbfgs([w], closure, max_iter)
    w = w.detach()
    return LinearClassifier(w[:, :-1], w[:, -1], classes)


def _svc_targets(labels: np.ndarray, k: int, balanced: bool) -> tuple[np.ndarray, np.ndarray]:
    """±1 targets and liblinear's per-sample weights for each one-vs-rest machine: ``[n, machines]``.

    Two classes need one machine; otherwise one per class, and liblinear's one-vs-rest
    weighs only the positive class (the rest keep C).
    """
    n = len(labels)
    class_weight = n / (k * np.bincount(labels, minlength=k)) if balanced else np.ones(k)
    if k == 2:
        return np.where(labels == 1, 1.0, -1.0)[:, None], class_weight[labels][:, None]
    targets = np.where(labels[:, None] == np.arange(k)[None, :], 1.0, -1.0)
    weights = np.where(labels[:, None] == np.arange(k)[None, :], class_weight[None, :], 1.0)
    return targets, weights


def fit_linear_svc_1d(
    x: np.ndarray, y: np.ndarray, c: float = 0.01, balanced: bool = True, max_iter: int = 50
) -> LinearClassifier:
    """:func:`fit_linear_svc` for a single input feature, by generalised Newton steps.

    With one feature every machine has two parameters θ = (w, b), and the
    squared-hinge objective is piecewise quadratic: each step solves the 2×2 Newton
    system on the current active set (Keerthi & DeCoste 2005), halving the step
    until the objective decreases; all machines are solved at once.
    """
    classes, labels = np.unique(np.asarray(y), return_inverse=True)
    targets, weights = _svc_targets(labels, len(classes), balanced)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    features = np.stack([x, np.ones_like(x)], 1)  # [n, 2]
    theta = np.zeros((targets.shape[1], 2))  # [machines, 2]

    def objective(t: np.ndarray) -> np.ndarray:
        margins = np.maximum(0.0, 1.0 - targets * (features @ t.T))
        return 0.5 * (t**2).sum(1) + c * (weights * margins**2).sum(0)

    current = objective(theta)
    for _ in range(max_iter):
        slack = 1.0 - targets * (features @ theta.T)  # [n, M]
        active = (slack > 0) * weights  # [n, M]
        grad = theta - 2 * c * (active * targets * slack).T @ features
        outer = (features[:, :, None] * features[:, None, :]).reshape(len(x), 4)
        hess = np.eye(2)[None] + 2 * c * (active.T @ outer).reshape(-1, 2, 2)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        scale = np.ones(len(theta))
        for _ in range(30):
            candidate = theta - scale[:, None] * step
            value = objective(candidate)
            worse = value > current + 1e-12
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        theta, previous, current = candidate, current, value
        if np.all(previous - current <= 1e-10 * np.maximum(1.0, np.abs(current))):
            break
    return LinearClassifier(torch.as_tensor(theta[:, :1]), torch.as_tensor(theta[:, 1]), classes)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC: P(score of a positive > score of a negative), ties counting ½."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = np.asarray(scores)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def macro_roc_auc(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes of the one-vs-rest ROC AUC (classes absent from ``y`` are skipped)."""
    aucs = []
    for j, cls in enumerate(classes):
        positive = np.asarray(y) == cls
        if positive.all() or not positive.any():
            continue
        aucs.append(roc_auc(positive, probabilities[:, j]))
    return float(np.mean(aucs))

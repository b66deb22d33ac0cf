"""Linear models fitted on row blocks: ``LogisticRegression``, ``LinearRegression``, ``Ridge``.

Logistic regression minimises scikit-learn's objective with L-BFGS on the client while every
loss/gradient evaluation runs on the workers as one task per worker thread over the blocks it
holds (the coefficients travel inside the tasks; one round trip per evaluation), the
per-block sums added in block order on the client so that the bits do not depend on
placement.  Each block is read once per evaluation: ``X @ w`` and ``X.T @ g`` are computed on
the same cache-sized row slice.  The least-squares models reduce the blocks to weighted
moments (means and centred cross-products, merged pairwise) and solve the normal equations
on the client, so they need a single pass over the data (which also checks it for NaN and
infinity).
"""

from __future__ import annotations

import logging
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
from scipy.special import expit, logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from distml.diagnostics import finish_activity, report_activity
from distml.estimators._data import (RowBlocks, Workers, aligned, apply_rows, as_chunked,
                                     check_finite_arrays, check_sample_weight,
                                     check_weight_sum, is_chunked, map_grouped,
                                     nonfinite_counts, plan_groups, raise_nonfinite,
                                     row_blocks)

__all__ = ["LinearRegression", "LogisticRegression", "Ridge"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- input checks
def _as_float_chunked(X: Any) -> Any:
    arr = as_chunked(X)
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead.")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _fit_inputs(est: BaseEstimator, X: Any, y: Any, sample_weight: Any,
                classifier: bool) -> tuple[RowBlocks, int]:
    """Validate, set ``n_features_in_`` and return the row blocks and the feature count.

    Chunked blocks are not checked for NaN and infinity here: the first pass each model
    makes over them does it (a separate pass would read all of ``X`` once more)."""
    if is_chunked(X) or is_chunked(y):
        X = _as_float_chunked(X) if is_chunked(X) else validate_data(est, X, reset=True)
        if not is_chunked(y):
            y = np.asarray(y)
            if classifier:
                check_classification_targets(y)
        n_features = int(X.shape[1])
        est.n_features_in_ = n_features
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
        sw = check_sample_weight(sample_weight, int(X.shape[0]))
        return row_blocks(X, y, sw), n_features
    X, y = validate_data(est, X, y, dtype=[np.float64, np.float32], y_numeric=not classifier,
                         multi_output=not classifier)
    if classifier:
        check_classification_targets(y)
    return row_blocks(X, y, check_sample_weight(sample_weight, X.shape[0])), X.shape[1]


def _check_predict_input(est: BaseEstimator, X: Any) -> Any:
    check_is_fitted(est)
    if is_chunked(X):
        X = _as_float_chunked(X)
        if int(X.shape[1]) != est.n_features_in_:
            raise ValueError(f"X has {int(X.shape[1])} features, but {type(est).__name__} is "
                             f"expecting {est.n_features_in_} features as input.")
        return X
    return validate_data(est, X, reset=False, dtype=[np.float64, np.float32])


# ---------------------------------------------------------------------- block tasks
def _label_summary(meta: tuple[int], X: Any, y: np.ndarray, w: Any) -> tuple:
    """One pass over a block's labels and weights (``X`` is not read): NaN/infinity counts of
    ``y`` and ``w``, the labels present, and their summed sample weights."""
    y = np.ravel(y)
    labels = np.unique(y)  # then searchsorted: return_inverse sorts, 7x slower on 200,000 rows
    counts = np.bincount(np.searchsorted(labels, y), weights=w,
                         minlength=len(labels)).astype(np.float64)
    return nonfinite_counts(y, w), labels, counts


def _merge_label_summaries(a: tuple, b: tuple) -> tuple:
    labels = np.union1d(a[1], b[1])
    counts = np.zeros(len(labels))
    for part in (a, b):
        counts[np.searchsorted(labels, part[1])] += part[2]
    return a[0] + b[0], labels, counts


def _encode(X: np.ndarray, y: np.ndarray, w: Any, classes: np.ndarray,
            class_weight: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """Class codes of ``y`` and the effective sample weights (``None`` when all ones)."""
    codes = np.searchsorted(classes, np.ravel(y))
    if class_weight is not None:
        cw = class_weight[codes]
        w = cw if w is None else w * cw
    return codes, (None if w is None else np.asarray(w, dtype=np.float64))


#: Rows of a block taken together by the loss/gradient kernels: their slice of ``X`` (about
#: 1 MB) stays in the core's cache between ``X @ w`` and ``X.T @ g``, so each evaluation reads
#: the block from memory once instead of twice.
_SLICE_BYTES = 1 << 20


def _slices(X: np.ndarray) -> range:
    return range(0, X.shape[0], max(64, _SLICE_BYTES // (8 * max(1, X.shape[1]))))


def _binary_loss_grad(X: np.ndarray, codes: np.ndarray, sw: Any, coef: np.ndarray,
                      fit_intercept: bool) -> np.ndarray:
    """Summed weighted log-loss and its gradient: ``[loss, d/dw..., d/db]``."""
    n_features = X.shape[1]
    w = coef[:n_features]
    out = np.zeros(coef.size + 1)
    grad = out[1:n_features + 1]
    step = _slices(X).step
    for start in _slices(X):
        Xs = X[start:start + step]
        z = Xs @ w
        if fit_intercept:
            z += coef[-1]
        y = codes[start:start + step].astype(np.float64)
        # log(1 + e^z) and expit(z) from one exponential, stable for any z
        e = np.exp(-np.abs(z))
        pointwise = np.maximum(z, 0.0) + np.log1p(e) - y * z
        g = np.where(z >= 0.0, 1.0, e) / (1.0 + e) - y
        if sw is not None:
            s = sw[start:start + step]
            pointwise *= s
            g *= s
        out[0] += pointwise.sum()
        grad += g @ Xs
        if fit_intercept:
            out[-1] += g.sum()
    return out


def _multinomial_loss_grad(X: np.ndarray, codes: np.ndarray, sw: Any, coef: np.ndarray,
                           fit_intercept: bool, n_classes: int) -> np.ndarray:
    """Summed weighted cross-entropy and its gradient w.r.t. the ``(classes, features [+1])``
    coefficient matrix (flattened), after the loss in position 0."""
    W = coef.reshape(n_classes, -1)
    n_features = X.shape[1]
    Wx = W[:, :n_features].T
    loss, grad = 0.0, np.zeros_like(W)
    step = _slices(X).step
    for start in _slices(X):
        Xs, c = X[start:start + step], codes[start:start + step]
        Z = Xs @ Wx
        if fit_intercept:
            Z += W[:, -1]
        rows = np.arange(len(c))
        top = Z.max(axis=1)
        G = np.exp(Z - top[:, None])  # softmax and log-sum-exp from one exponential
        total = G.sum(axis=1)
        pointwise = top + np.log(total) - Z[rows, c]
        G /= total[:, None]
        G[rows, c] -= 1.0
        if sw is not None:
            s = sw[start:start + step]
            pointwise *= s
            G *= s[:, None]
        loss += pointwise.sum()
        grad[:, :n_features] += G.T @ Xs
        if fit_intercept:
            grad[:, -1] += G.sum(axis=0)
    return np.concatenate([[loss], grad.ravel()])


def _block_loss_grad(meta: tuple[int], X: np.ndarray, encoded: tuple, w: Any,
                     coef: np.ndarray, fit_intercept: bool, n_classes: int,
                     check: bool) -> np.ndarray:
    """One block's summed loss and gradient (see the kernels above); with ``check`` (the
    first evaluation) ``X`` is first checked for NaN and infinity, which spares a separate
    pass over the data."""
    if check:
        check_finite_arrays([X], ["X"])
    X, (codes, sw) = aligned(X), encoded
    if n_classes == 2:
        return _binary_loss_grad(X, codes, sw, coef, fit_intercept)
    return _multinomial_loss_grad(X, codes, sw, coef, fit_intercept, n_classes)


def _decision_block(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    scores = X @ coef.T + intercept
    return scores[:, 0] if scores.shape[1] == 1 else scores


def _proba_block(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    scores = X @ coef.T + intercept
    if scores.shape[1] == 1:
        p = expit(scores[:, 0])
        return np.column_stack([1.0 - p, p])
    return np.exp(scores - logsumexp(scores, axis=1, keepdims=True))


def _log_proba_block(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    scores = X @ coef.T + intercept
    if scores.shape[1] == 1:
        s = scores[:, 0]
        return np.column_stack([-np.logaddexp(0.0, s), -np.logaddexp(0.0, -s)])
    return scores - logsumexp(scores, axis=1, keepdims=True)


def _predict_block(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                   classes: np.ndarray) -> np.ndarray:
    scores = X @ coef.T + intercept
    index = (scores[:, 0] > 0).astype(np.intp) if scores.shape[1] == 1 else scores.argmax(1)
    return classes[index]


def _linear_block(X: np.ndarray, coef: np.ndarray, intercept: Any) -> np.ndarray:
    return X @ coef.T + intercept


# ---------------------------------------------------------------------- LogisticRegression
class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression (binary, or multinomial for 3+ classes) with an optional L2
    penalty, fitted with L-BFGS on row blocks.

    Minimises ``C * sum_i s_i * logloss_i + ||w||^2 / 2`` (``s_i``: sample times class
    weight; the intercept is not penalised), the objective of scikit-learn's
    ``LogisticRegression(solver="lbfgs")``, with the same scaling and stopping rules.
    """

    def __init__(self, penalty: str | None = "l2", *, C: float = 1.0, fit_intercept: bool = True,
                 max_iter: int = 100, tol: float = 1e-4,
                 class_weight: dict | str | None = None) -> None:
        self.penalty = penalty
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight

    def _check_params(self) -> None:
        if self.penalty not in ("l2", None):
            raise ValueError(f"The 'penalty' parameter of LogisticRegression must be 'l2' or "
                             f"None. Got {self.penalty!r} instead.")
        if not isinstance(self.C, numbers.Real) or not self.C > 0:
            raise ValueError(f"The 'C' parameter of LogisticRegression must be a float in the "
                             f"range (0.0, inf]. Got {self.C!r} instead.")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 0:
            raise ValueError(f"The 'max_iter' parameter of LogisticRegression must be an int "
                             f"in the range [0, inf). Got {self.max_iter!r} instead.")
        if not isinstance(self.tol, numbers.Real) or self.tol < 0:
            raise ValueError(f"The 'tol' parameter of LogisticRegression must be a float in "
                             f"the range [0.0, inf). Got {self.tol!r} instead.")
        if not (self.class_weight is None or self.class_weight == "balanced"
                or isinstance(self.class_weight, dict)):
            raise ValueError("The 'class_weight' parameter of LogisticRegression must be a "
                             f"dict, 'balanced' or None. Got {self.class_weight!r} instead.")

    def _class_weight_vector(self, counts: np.ndarray) -> np.ndarray | None:
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            return counts.sum() / (len(self.classes_) * counts)
        weights = np.ones(len(self.classes_))
        for i, c in enumerate(self.classes_):
            weights[i] = self.class_weight.get(c.item() if hasattr(c, "item") else c, 1.0)
        return weights

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "LogisticRegression":
        """Fit on numpy or chunked ``X``/``y`` (and ``sample_weight``, chunked like ``X``)."""
        self._check_params()
        blocks, n_features = _fit_inputs(self, X, y, sample_weight, classifier=True)
        workers = Workers.of(blocks.client)
        groups = plan_groups(blocks, workers, [(i,) for i in range(blocks.nblocks)],
                             row_bytes=8 * (n_features + 2))
        summaries = map_grouped(blocks, groups, _label_summary)
        summary = summaries[0]
        for part in summaries[1:]:  # block order: the same bits wherever the blocks ran
            summary = _merge_label_summaries(summary, part)
        nonfinite, self.classes_, counts = summary
        raise_nonfinite(nonfinite, ["y", "sample_weight"])
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError("This solver needs samples of at least 2 classes in the data, "
                             f"but the data contains only one class: {self.classes_[0]!r}")
        check_weight_sum(counts)
        cw = self._class_weight_vector(counts)
        sw_sum = float(counts.sum() if cw is None else counts @ cw)
        encoded = RowBlocks([(p[0], e, None) for p, e in zip(
            blocks.parts, blocks.map(_encode, self.classes_, cw))], blocks.lengths,
            blocks.client)
        unchecked = [is_chunked(X)]  # numpy X was checked by validate_data
        binary = n_classes == 2
        n_params = n_features + int(self.fit_intercept)
        shape = (1 if binary else n_classes, n_params)
        l2 = 0.0 if self.penalty is None else 1.0 / (self.C * sw_sum)
        penalised = np.ones(shape)
        if self.fit_intercept:
            penalised[:, -1] = 0.0
        penalised = penalised.ravel()

        progress = {"iteration": 0, "loss": np.nan}

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            # the blocks of ``encoded`` are those of ``blocks`` (same X): same plan
            parts = map_grouped(encoded, groups, _block_loss_grad, w, self.fit_intercept,
                                n_classes, unchecked[0])
            unchecked[0] = False
            total = np.zeros(w.size + 1)
            for part in parts:  # block order: the same bits wherever the blocks ran
                total += part
            pw = penalised * w
            loss = total[0] / sw_sum + 0.5 * l2 * float(pw @ pw)
            progress["loss"] = loss
            return loss, total[1:] / sw_sum + l2 * pw

        def iteration_done(_: Any) -> None:
            # the last evaluation is the accepted point: report its loss, no extra round trip
            progress["iteration"] += 1
            logger.debug("LogisticRegression L-BFGS iteration %d: loss %.10g",
                         progress["iteration"], progress["loss"])
            report_activity("LogisticRegression.fit", iteration=progress["iteration"],
                            max_iter=self.max_iter, loss=progress["loss"])

        try:
            result = scipy.optimize.minimize(
                objective, np.zeros(shape).ravel(), method="L-BFGS-B", jac=True,
                callback=iteration_done,
                options={"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol,
                         "ftol": 64 * np.finfo(float).eps})
        finally:
            finish_activity("LogisticRegression.fit")
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) "
                          f"(status={result.status}): {result.message}. Increase max_iter "
                          "or scale the data.", ConvergenceWarning, stacklevel=2)
        self.n_iter_ = np.array([min(result.nit, self.max_iter)], dtype=np.int32)
        W = result.x.reshape(shape)
        if self.fit_intercept:
            self.coef_, self.intercept_ = W[:, :-1].copy(), W[:, -1].copy()
        else:
            self.coef_, self.intercept_ = W.copy(), np.zeros(shape[0])
        return self

    def decision_function(self, X: Any) -> Any:
        """Signed distances to the boundary: 1-D for two classes, else one column per class."""
        X = _check_predict_input(self, X)
        k = self.coef_.shape[0]
        return apply_rows(_decision_block, X, self.coef_, self.intercept_,
                          n_out=None if k == 1 else k)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, one column per class of ``classes_``."""
        X = _check_predict_input(self, X)
        return apply_rows(_proba_block, X, self.coef_, self.intercept_,
                          n_out=len(self.classes_))

    def predict_log_proba(self, X: Any) -> Any:
        """Logarithms of :meth:`predict_proba`, computed stably."""
        X = _check_predict_input(self, X)
        return apply_rows(_log_proba_block, X, self.coef_, self.intercept_,
                          n_out=len(self.classes_))

    def predict(self, X: Any) -> Any:
        """The most probable class of each row."""
        X = _check_predict_input(self, X)
        return apply_rows(_predict_block, X, self.coef_, self.intercept_, self.classes_,
                          dtype=self.classes_.dtype)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``."""
        from distml.estimators.metrics import accuracy_score
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)


# ---------------------------------------------------------------------- least squares
def _moments(X: np.ndarray, y: np.ndarray, w: Any, center: bool) -> tuple:
    """Weight sum, means (zero unless ``center``) and (centred) cross-products of a block."""
    X = aligned(X)
    y2 = y.reshape(len(y), -1).astype(np.float64, copy=False)
    sw = np.ones(len(X)) if w is None else np.asarray(w, dtype=np.float64)
    n = float(sw.sum())
    if center and n > 0:
        mx, my = sw @ X / n, sw @ y2 / n
        Xc, yc = X - mx, y2 - my
    else:
        mx, my = np.zeros(X.shape[1]), np.zeros(y2.shape[1])
        Xc, yc = X, y2
    Xw = Xc * sw[:, None]
    return n, mx, my, Xw.T @ Xc, Xw.T @ yc


def _checked_moments(X: np.ndarray, y: np.ndarray, w: Any, center: bool) -> tuple:
    """NaN/infinity counts of the block's arrays and its :func:`_moments`, in one task (the
    check costs no separate pass over ``X``)."""
    counts = nonfinite_counts(X, y, w)
    with np.errstate(all="ignore"):  # non-finite input is reported from the counts
        return counts, _moments(X, y, w, center)


def _merge_checked_moments(a: tuple, b: tuple) -> tuple:
    with np.errstate(all="ignore"):
        return a[0] + b[0], _merge_moments(a[1], b[1])


def _merge_moments(a: tuple, b: tuple) -> tuple:
    """Pairwise merge of :func:`_moments` results (exact, numerically stable)."""
    na, mxa, mya, xxa, xya = a
    nb, mxb, myb, xxb, xyb = b
    n = na + nb
    if n == 0:
        return a
    dx, dy = mxb - mxa, myb - mya
    f = na * nb / n
    return (n, mxa + dx * nb / n, mya + dy * nb / n,
            xxa + xxb + f * np.outer(dx, dx), xya + xyb + f * np.outer(dx, dy))


class _LeastSquares(RegressorMixin, BaseEstimator):
    """Shared fit/predict of the linear least-squares models (closed form, one pass)."""

    def _alpha(self) -> float:
        return 0.0

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "_LeastSquares":
        """Fit on numpy or chunked ``X``/``y`` (and ``sample_weight``, chunked like ``X``)."""
        alpha = self._alpha()
        blocks, n_features = _fit_inputs(self, X, y, sample_weight, classifier=False)
        nonfinite, (n, mx, my, xx, xy) = blocks.reduce(
            _checked_moments, self.fit_intercept, combine=_merge_checked_moments)
        raise_nonfinite(nonfinite, ["X", "y", "sample_weight"])
        check_weight_sum(n)
        if alpha > 0:
            coef = scipy.linalg.solve(xx + alpha * np.eye(n_features), xy, assume_a="pos")
        else:
            coef = scipy.linalg.lstsq(xx, xy, cond=np.finfo(float).eps * n_features)[0]
        y_ndim = (as_chunked(y) if is_chunked(y) else np.asarray(y)).ndim
        coef = coef.T
        intercept = my - coef @ mx if self.fit_intercept else np.zeros(coef.shape[0])
        if y_ndim == 1:
            self.coef_, self.intercept_ = coef[0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef, intercept
        return self

    def predict(self, X: Any) -> Any:
        """Predicted targets: 1-D for a 1-D target, else one column per target."""
        X = _check_predict_input(self, X)
        n_out = None if self.coef_.ndim == 1 else self.coef_.shape[0]
        return apply_rows(_linear_block, X, self.coef_, self.intercept_, n_out=n_out)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R^2 of :meth:`predict` on ``X`` against ``y``."""
        from distml.estimators.metrics import r2_score
        return r2_score(y, self.predict(X), sample_weight=sample_weight)


class LinearRegression(_LeastSquares):
    """Ordinary least squares (minimum-norm solution when ``X`` is rank deficient)."""

    def __init__(self, *, fit_intercept: bool = True) -> None:
        self.fit_intercept = fit_intercept


class Ridge(_LeastSquares):
    """Least squares with the L2 penalty ``alpha * ||w||^2`` (the intercept not penalised)."""

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _alpha(self) -> float:
        if not isinstance(self.alpha, numbers.Real) or self.alpha < 0:
            raise ValueError("The 'alpha' parameter of Ridge must be a float in the range "
                             f"[0.0, inf). Got {self.alpha!r} instead.")
        return float(self.alpha)

"""Partitioned stochastic gradient descent: ``SGDClassifier`` and ``SGDRegressor``.

The training rows stay where they live.  Each epoch shuffles the block order and splits it
into rounds; in a round every block runs one pass of scikit-learn's SGD (rows shuffled by a
seed drawn from ``(random_state, epoch, block index)``) starting from the current global
weights, and the client replaces the global weights by the average of the block results,
weighted by the blocks' summed sample weights.  On a cluster the blocks of a round are
grouped by the worker holding them (``Client.who_has``) into one task per worker thread,
so only weights travel.  Because every block starts from the same weights and the average
is summed in block order, the coefficients depend only on ``random_state``, the chunking
and (with ``sync_every``) the number of workers, never on task placement or timing.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn import config_context
from sklearn import linear_model as sk_linear
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from distml.estimators._data import (RowBlocks, Workers, aligned, apply_rows, as_chunked,
                                     check_finite_arrays, check_sample_weight, is_chunked,
                                     map_grouped, plan_groups, row_blocks, scratch)

__all__ = ["SGDClassifier", "SGDRegressor"]

logger = logging.getLogger(__name__)

_BLOCK_NAMES = ("X", "y", "sample_weight")

_MARGIN_LOSSES = ("hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron")
_RESIDUAL_LOSSES = ("squared_error", "huber", "epsilon_insensitive",
                    "squared_epsilon_insensitive")


# ---------------------------------------------------------------------- losses
def _sample_losses(loss: str, y: np.ndarray, p: np.ndarray, epsilon: float) -> np.ndarray:
    """Per-sample loss of predictions ``p`` for targets ``y`` (+-1 labels for margin losses)."""
    if loss in _MARGIN_LOSSES:
        z = y * p
        if loss == "hinge":
            return np.maximum(0.0, 1.0 - z)
        if loss == "perceptron":
            return np.maximum(0.0, -z)
        if loss == "squared_hinge":
            return np.maximum(0.0, 1.0 - z) ** 2
        if loss == "log_loss":
            return np.logaddexp(0.0, -z)
        return np.where(z >= 1.0, 0.0, np.where(z >= -1.0, (1.0 - z) ** 2, -4.0 * z))
    r = np.abs(p - y)
    if loss == "squared_error":
        return 0.5 * r ** 2
    if loss == "huber":
        return np.where(r <= epsilon, 0.5 * r ** 2, epsilon * r - 0.5 * epsilon ** 2)
    if loss == "epsilon_insensitive":
        return np.maximum(0.0, r - epsilon)
    return np.maximum(0.0, r - epsilon) ** 2


def _decision(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    return aligned(np.asarray(X, dtype=np.float64)) @ coef.T + intercept


def _block_loss(loss: str, epsilon: float, classes: Any, X: np.ndarray, y: np.ndarray,
                w: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> float:
    """Summed weighted loss of one block (one-vs-rest problems summed for classifiers)."""
    scores = _decision(X, coef, intercept)
    if classes is None:
        return float(w @ _sample_losses(loss, y, scores, epsilon))
    if scores.ndim == 1 or scores.shape[1] == 1:
        signs = np.where(y == classes[1], 1.0, -1.0)
        return float(w @ _sample_losses(loss, signs, scores.ravel(), epsilon))
    total = 0.0
    for k, label in enumerate(classes):
        signs = np.where(y == label, 1.0, -1.0)
        total += float(w @ _sample_losses(loss, signs, scores[:, k], epsilon))
    return total


# ---------------------------------------------------------------------- block tasks
def _validation_rows(n: int, n_val: int, seed: int) -> np.ndarray:
    """Boolean mask of the ``n_val`` held-out rows of a block of ``n`` rows."""
    mask = np.zeros(n, dtype=bool)
    if n_val:
        mask[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return mask


def _split(X: np.ndarray, y: np.ndarray, w: Any, n_val: int, seed: int, held_out: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training (or, with ``held_out``, validation) rows of a block, weights filled in."""
    X = np.asarray(X, dtype=np.float64)  # scikit-learn's SGD needs X and coef_ alike
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    y = np.ravel(y)
    if n_val == 0:
        return X, y, w
    mask = _validation_rows(len(y), n_val, seed)
    if not held_out:
        mask = ~mask
    return X[mask], y[mask], w[mask]


def _shuffled_training_rows(X: Any, y: Any, w: Any, n_val: int, val_seed: int, seed: int
                            ) -> tuple[np.ndarray, np.ndarray, Any]:
    """The training rows of a block in the order ``seed`` shuffles them to, gathered into
    the task's scratch buffer (:func:`~distml.estimators._data.scratch`).

    A gather followed by a sequential SGD pass is cheaper than scikit-learn's own
    shuffling, which visits the rows of a 40 MB block at random through an index, so that
    every row is a cache miss inside the dependent chain of SGD updates, while the gather's
    loads overlap: about 21 ms of CPU per 100,000x50 block instead of 28-30 ms.  The one
    ``take`` also drops the held-out rows.  ``w`` stays ``None`` when no sample weights were
    given.
    """
    y = np.ravel(y)
    rows = np.arange(len(y)) if n_val == 0 else np.flatnonzero(
        ~_validation_rows(len(y), n_val, val_seed))
    order = rows[np.random.default_rng(seed).permutation(len(rows))]
    X = np.asarray(X, dtype=np.float64)
    # mode="clip" (indices are in range anyway): numpy buffers ``out`` in "raise" mode
    X = np.take(X, order, axis=0, out=scratch(len(order), X.shape[1:], X.dtype), mode="clip")
    return X, y[order], None if w is None else np.asarray(w, dtype=np.float64)[order]


def _train_block(meta: tuple[int, int, int, int], X: Any, y: Any, w: Any,
                 template: BaseEstimator, classes: Any, coef: np.ndarray,
                 intercept: np.ndarray, t: float, want_loss: bool, check: bool) -> tuple:
    """One SGD pass over a block, starting from ``coef``/``intercept``.

    ``meta`` is ``(block index, training seed, rows held out, validation seed)``.  Returns
    ``(index, coef, intercept, summed weight, summed loss)`` (the loss of the trained weights
    on the block's training rows when ``want_loss``, else 0).  With ``check`` (the first
    epoch of a call on chunked data) the block is first checked for NaN and infinity, which
    spares a separate pass over the data; scikit-learn's own per-call finiteness checks are
    skipped.
    """
    index, seed, n_val, val_seed = meta
    if check:
        check_finite_arrays((X, y, w), _BLOCK_NAMES)
    X, y, w = _shuffled_training_rows(X, y, w, n_val, val_seed, seed)
    if classes is not None and not np.all(np.isin(y, classes)):
        unseen = np.setdiff1d(np.unique(y), classes)
        raise ValueError(f"y contains labels {unseen.tolist()} that are not in classes "
                         f"{np.asarray(classes).tolist()}")
    weight = float(len(y) if w is None else w.sum())
    if len(y) == 0 or weight == 0.0:
        return index, coef, intercept, 0.0, 0.0
    est = clone(template)  # shuffle=False: the rows arrive shuffled
    est.coef_, est.intercept_, est.t_ = coef.copy(), intercept.copy(), float(t)
    est.n_features_in_ = X.shape[1]
    with config_context(assume_finite=True):
        if classes is None:
            est.partial_fit(X, y, sample_weight=w)
        else:
            est.classes_ = classes
            est.partial_fit(X, y, classes=classes, sample_weight=w)
    loss = _block_loss(template.loss, template.epsilon, classes, X, y,
                       np.ones(len(y)) if w is None else w, est.coef_,
                       est.intercept_) if want_loss else 0.0
    return index, est.coef_, est.intercept_, weight, loss


def _validation_stats(X: np.ndarray, y: np.ndarray, w: Any, n_val: int, seed: int,
                      classes: Any, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Sufficient statistics of the held-out score: ``[sum w, sum w*correct]`` for
    classifiers, ``[sum w, sum w*y, sum w*y**2, sum w*residual**2]`` for regressors."""
    X, y, w = _split(X, y, w, n_val, seed, held_out=True)
    scores = _decision(X, coef, intercept)
    if classes is not None:
        return np.array([w.sum(), w @ (_labels(scores, classes) == y)])
    return np.array([w.sum(), w @ y, w @ y ** 2, w @ (y - scores) ** 2])


def _labels(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    if scores.ndim == 1 or scores.shape[1] == 1:
        return classes[(scores.ravel() > 0).astype(int)]
    return classes[np.argmax(scores, axis=1)]


def _block_labels(X: np.ndarray, y: np.ndarray, w: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.ravel(y)
    labels = np.unique(y)  # then searchsorted: return_counts sorts, several times slower
    return labels, np.bincount(np.searchsorted(labels, y), minlength=len(labels))


def _merge_labels(a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    labels = np.union1d(a[0], b[0])
    counts = np.zeros(len(labels), dtype=np.int64)
    for part_labels, part_counts in (a, b):
        counts[np.searchsorted(labels, part_labels)] += part_counts
    return labels, counts


def _score_from_stats(stats: np.ndarray, classifier: bool) -> float:
    if classifier:
        return float(stats[1] / stats[0])
    tss = stats[2] - stats[1] ** 2 / stats[0]
    sres = stats[3]
    return float(1.0 - sres / tss) if tss > 0 else (1.0 if sres == 0 else 0.0)


# ---------------------------------------------------------------------- reporting
class _EpochReport:
    """What a fit says after each epoch, from figures the client has anyway (no extra round
    trip): a debug log line, the dashboard's activity ``<estimator>.fit`` (epoch, n_epochs and
    the loss or validation score when computed), and a progress bar over the epochs, shown
    when ``verbose`` is set or, for ``show_bar``, on an interactive terminal."""

    def __init__(self, name: str, n_epochs: int, verbose: Any, show_bar: bool) -> None:
        from distml.diagnostics import ProgressBar
        self.name, self.n_epochs, self.activity = name, n_epochs, f"{name}.fit"
        self.bar = ProgressBar(n_epochs, f"{name} epochs", unit="epoch",
                               disable=False if verbose else (None if show_bar else True))

    def epoch(self, epoch: int, objective: float | None, early_stopping: bool) -> None:
        from distml.diagnostics import report_activity
        fields: dict[str, Any] = {}
        if objective is not None:
            fields = {"validation_score": -objective} if early_stopping else {"loss": objective}
        logger.debug("%s epoch %d/%d%s", self.name, epoch, self.n_epochs,
                     "".join(f", {k} {v:.6g}" for k, v in fields.items()))
        report_activity(self.activity, epoch=epoch, n_epochs=self.n_epochs, **fields)
        self.bar.update()
        if fields:
            self.bar.set_postfix(**fields)

    def __enter__(self) -> "_EpochReport":
        return self

    def __exit__(self, *exc: Any) -> None:
        from distml.diagnostics import finish_activity
        self.bar.close()
        finish_activity(self.activity)


# ---------------------------------------------------------------------- rounds
def _run_round(blocks: RowBlocks, workers: Workers, template: BaseEstimator, classes: Any,
               coef: np.ndarray, intercept: np.ndarray, t: float, want_loss: bool,
               check: bool, metas: list[tuple[int, int, int, int]]) -> list[tuple]:
    """Train the blocks named in ``metas`` from the given weights; one result per block.

    On a cluster the blocks go to the workers holding them, a few tasks per worker (see
    :func:`~distml.estimators._data.map_grouped`); which task trains a block does not
    change its result.
    """
    row_bytes = 8 * (coef.shape[-1] + 2)  # X, y and sample_weight in float64
    groups = plan_groups(blocks, workers, metas, row_bytes)
    logger.debug("training %d blocks in %d tasks", len(metas), len(groups))
    return map_grouped(blocks, groups, _train_block, template, classes, coef, intercept, t,
                       want_loss, check)


# ---------------------------------------------------------------------- estimators
class _PartitionedSGD(BaseEstimator):
    """Shared fitting loop; subclasses set the scikit-learn estimator run on each block."""

    _sk_class: type
    _classifier: bool

    # ----------------------------------------------------------------- input
    def _check_params(self) -> None:
        losses = _MARGIN_LOSSES + _RESIDUAL_LOSSES if self._classifier else _RESIDUAL_LOSSES
        if self.loss not in losses:
            raise ValueError(f"The loss {self.loss!r} is not supported; choose from {losses}")
        for name in ("n_epochs", "n_iter_no_change"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.sync_every is not None and (not isinstance(self.sync_every, numbers.Integral)
                                            or self.sync_every < 1):
            raise ValueError(f"sync_every must be None or a positive integer, got "
                             f"{self.sync_every!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction!r}")

    def _blocks(self, X: Any, y: Any, sample_weight: Any, reset: bool
                ) -> tuple[RowBlocks, bool]:
        """Validated row blocks of ``(X, y, sample_weight)``, and whether they are still to be
        checked for NaN and infinity (chunked input: the first epoch does it); sets
        ``n_features_in_``."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        if is_chunked(X) or is_chunked(y):
            if is_chunked(X):
                X = as_chunked(X)
                if X.ndim != 2:
                    raise ValueError(f"Expected 2D array, got {X.ndim}D array instead.")
                # converted once here rather than in every epoch (SGD runs in float64)
                X = X if X.dtype == np.float64 else X.astype(np.float64)
                n_features = int(X.shape[1])
                if reset:
                    self.n_features_in_ = n_features
                elif n_features != self.n_features_in_:
                    raise ValueError(f"X has {n_features} features, but {type(self).__name__}"
                                     f" is expecting {self.n_features_in_} features as input.")
            else:
                X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            if not is_chunked(y):
                y = np.asarray(y)
                if self._classifier:
                    check_classification_targets(y)
            return row_blocks(X, y, check_sample_weight(sample_weight, int(X.shape[0]))), True
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32],
                             y_numeric=not self._classifier)
        if self._classifier:
            check_classification_targets(y)
        return row_blocks(X, y, check_sample_weight(sample_weight, X.shape[0])), False

    def _template(self, class_weight: Any) -> BaseEstimator:
        """The scikit-learn estimator a block task clones and runs one pass of."""
        params = dict(loss=self.loss, penalty=self.penalty, alpha=self.alpha,
                      l1_ratio=self.l1_ratio, fit_intercept=self.fit_intercept, max_iter=1,
                      tol=None, shuffle=False, epsilon=self.epsilon,
                      learning_rate=self.learning_rate, eta0=self.eta0, power_t=self.power_t)
        if self._classifier:
            params["class_weight"] = class_weight
        return self._sk_class(**params)

    def _base_seed(self) -> int:
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    # ----------------------------------------------------------------- training
    def _fit(self, X: Any, y: Any, sample_weight: Any, classes: Any, n_epochs: int,
             reset: bool, early_stopping: bool) -> "_PartitionedSGD":
        self._check_params()
        blocks, check = self._blocks(X, y, sample_weight, reset)
        class_weight = self._prepare_targets(blocks, classes, reset)  # sets classes_
        if reset:
            self.t_ = 1.0
            self.coef_, self.intercept_ = self._zero_weights()
            self._seed = self._base_seed()
            self._calls = 0
        template = self._template(class_weight)
        classes_ = self.classes_ if self._classifier else None
        n_val = ([int(self.validation_fraction * n) for n in blocks.lengths]
                 if early_stopping else [0] * blocks.nblocks)
        if early_stopping and sum(n_val) == 0:
            raise ValueError("The validation set is too small: increase validation_fraction "
                             "or give more samples.")
        val_seeds = [_seed(self._seed, -1, b) for b in range(blocks.nblocks)]
        workers = Workers.of(blocks.client)
        per_round = blocks.nblocks if self.sync_every is None else self.sync_every * len(
            workers.nthreads)
        # the training loss is an extra pass over each block: computed only when it can stop
        # the fit (n_iter_no_change epochs without improvement must fit in n_epochs) or is shown
        want_loss = self.tol is not None and not early_stopping and (
            n_epochs > self.n_iter_no_change or bool(self.verbose))
        best, stalled, epochs = math.inf, 0, 0
        with _EpochReport(type(self).__name__, n_epochs, self.verbose,
                          show_bar=n_epochs > 1) as report:
            for _ in range(n_epochs):
                epochs += 1
                objective = self._epoch(blocks, workers, template, classes_, n_val, val_seeds,
                                        per_round, want_loss, check, early_stopping)
                check = False
                report.epoch(epochs, objective, early_stopping)
                if self.tol is not None and objective is not None:
                    stalled = stalled + 1 if objective > best - self.tol else 0
                    best = min(best, objective)
                    if stalled >= self.n_iter_no_change:
                        break
        self.n_iter_ = epochs
        return self

    def _epoch(self, blocks: RowBlocks, workers: Workers, template: BaseEstimator,
               classes_: Any, n_val: list[int], val_seeds: list[int], per_round: int,
               want_loss: bool, check: bool, early_stopping: bool) -> float | None:
        """One epoch from the current weights, which it updates; returns the objective that
        early stopping watches (the held-out score negated, or the mean training loss;
        ``None`` when neither is wanted)."""
        coef, intercept, t = self.coef_, self.intercept_, self.t_
        epoch, self._calls = self._calls, self._calls + 1
        order = np.random.default_rng([self._seed, epoch]).permutation(blocks.nblocks)
        total_weight, total_loss = 0.0, 0.0
        for start in range(0, blocks.nblocks, per_round):
            metas = [(int(b), _seed(self._seed, epoch, int(b)), n_val[b], val_seeds[b])
                     for b in sorted(order[start:start + per_round])]
            results = _run_round(blocks, workers, template, classes_, coef, intercept, t,
                                 want_loss, check, metas)
            coef, intercept, weight, loss = _average(results, coef, intercept)
            total_weight += weight
            total_loss += loss
            t += sum(blocks.lengths[m[0]] - m[2] for m in metas)
        if total_weight == 0.0:
            raise ValueError("Sample weights must contain at least one non-zero number.")
        self.coef_, self.intercept_, self.t_ = coef, intercept, t
        if early_stopping:
            stats = self._validation(blocks, n_val, val_seeds, classes_, coef, intercept)
            return -_score_from_stats(stats, self._classifier)
        return total_loss / total_weight if want_loss else None

    def _validation(self, blocks: RowBlocks, n_val: list[int], seeds: list[int],
                    classes: Any, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        parts = [(*p, n, s) for p, n, s in zip(blocks.parts, n_val, seeds)]
        held = RowBlocks(parts, blocks.lengths, blocks.client)
        return _ordered_sum(held.map(_validation_stats, classes, coef, intercept), held.client)

    # ----------------------------------------------------------------- prediction
    def _check_X(self, X: Any) -> Any:
        check_is_fitted(self)
        if is_chunked(X):
            X = as_chunked(X)
            if X.ndim != 2 or int(X.shape[1]) != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1] if X.ndim == 2 else X.ndim} features, but"
                                 f" {type(self).__name__} is expecting {self.n_features_in_} "
                                 "features as input.")
            return X if X.dtype.kind == "f" else X.astype(np.float64)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def _chunked_score(self, X: Any, y: Any, sample_weight: Any) -> float:
        blocks = row_blocks(self._check_X(X), y, sample_weight)
        classes = self.classes_ if self._classifier else None
        parts = blocks.map(_validation_stats, 0, 0, classes, self.coef_, self.intercept_)
        return _score_from_stats(_ordered_sum(parts, blocks.client), self._classifier)


def _scores(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    scores = _decision(X, coef, intercept)
    return scores.ravel() if scores.ndim == 2 and scores.shape[1] == 1 else scores


def _predict_labels(X: np.ndarray, classes: np.ndarray, coef: np.ndarray,
                    intercept: np.ndarray) -> np.ndarray:
    return _labels(_decision(X, coef, intercept), classes)


def _probabilities(X: np.ndarray, loss: str, coef: np.ndarray, intercept: np.ndarray
                   ) -> np.ndarray:
    """Class probabilities from the one-vs-rest scores (logistic or clipped-linear link)."""
    scores = _decision(X, coef, intercept)
    link = expit(scores) if loss == "log_loss" else (np.clip(scores, -1.0, 1.0) + 1.0) / 2.0
    if link.shape[1] == 1:
        return np.hstack([1.0 - link, link])
    totals = link.sum(axis=1, keepdims=True)
    uniform = np.full_like(link, 1.0 / link.shape[1])
    return np.where(totals > 0, link / np.where(totals > 0, totals, 1.0), uniform)


def _seed(base: int, epoch: int, block: int) -> int:
    """A 31-bit seed from ``(base, epoch, block)``, independent of anything else."""
    return int(np.random.SeedSequence([base, epoch + 1, block]).generate_state(1)[0] >> 1)


def _ordered_sum(parts: list, client: Any) -> np.ndarray:
    values = client.gather(parts) if client is not None else parts
    total = np.zeros_like(np.asarray(values[0], dtype=np.float64))
    for v in values:
        total = total + v
    return total


def _average(results: list[tuple], coef: np.ndarray, intercept: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Weight-averaged coefficients of the block results, summed in block order."""
    results = sorted(results, key=lambda r: r[0])
    weight = sum(r[3] for r in results)
    loss = sum(r[4] for r in results)
    if weight == 0.0:
        return coef, intercept, 0.0, 0.0
    new_coef = np.zeros_like(coef, dtype=np.float64)
    new_intercept = np.zeros_like(intercept, dtype=np.float64)
    for _, c, i, w, _ in results:
        if w:
            new_coef += (w / weight) * c
            new_intercept += (w / weight) * i
    return new_coef, new_intercept, weight, loss


_COMMON_DOC = """
    The model is trained on row blocks where they live (see the module docstring): one
    epoch is one SGD pass over every block, each block starting from the current global
    weights, followed by a sample-weighted average of the block results.  Parameters are
    scikit-learn's, with ``n_epochs`` (passes over the data, at most) in place of
    ``max_iter``, and ``sync_every``: how many blocks per worker are trained between two
    averages (``None``: average once per epoch; a round then takes ``sync_every`` times the
    number of workers blocks, in the epoch's shuffled block order); ``verbose`` shows a
    progress bar over the epochs (shown anyway on an interactive terminal).  ``early_stopping``
    holds out ``validation_fraction`` of every block.  ``X`` may be a numpy array (trained
    here as one block) or a chunked ``distml.array.Array`` (trained on the cluster of the
    default client, else in local threads); predictions keep the input's kind.
"""


class SGDClassifier(ClassifierMixin, _PartitionedSGD):
    """Linear classifier fitted by partitioned SGD (one-vs-rest for several classes)."""

    __doc__ = (__doc__ or "") + _COMMON_DOC
    _sk_class = sk_linear.SGDClassifier
    _classifier = True

    def __init__(self, loss: str = "hinge", *, penalty: str | None = "l2", alpha: float = 1e-4,
                 l1_ratio: float = 0.15, fit_intercept: bool = True, n_epochs: int = 5,
                 tol: float | None = 1e-3, epsilon: float = 0.1, random_state: Any = None,
                 learning_rate: str = "optimal", eta0: float = 0.01, power_t: float = 0.5,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 5, class_weight: Any = None,
                 sync_every: int | None = None, verbose: int = 0) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.n_epochs = n_epochs
        self.tol = tol
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.sync_every = sync_every
        self.verbose = verbose

    def _prepare_targets(self, blocks: RowBlocks, classes: Any, reset: bool) -> Any:
        """Set ``classes_`` (from ``classes`` or one reduction over the labels) and return
        the class weights to train with."""
        balanced = isinstance(self.class_weight, str) and self.class_weight == "balanced"
        counts = None
        if reset:
            if classes is None or balanced:
                seen, counts = blocks.reduce(_block_labels, combine=_merge_labels)
                labels = seen
            if classes is not None:
                labels = np.unique(np.asarray(classes))
            if len(labels) < 2:
                raise ValueError("The number of classes has to be greater than one; got "
                                 f"{len(labels)} class")
            self.classes_ = labels
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={np.unique(classes)!r}` is not the same as on the "
                             f"first call to partial_fit, was: {self.classes_!r}")
        if not balanced:
            return self.class_weight
        if counts is None:
            raise ValueError("class_weight 'balanced' needs the class frequencies of the whole"
                             " data: use fit, or pass a dict of weights to partial_fit.")
        n_classes = len(self.classes_)
        return {label: counts.sum() / (n_classes * c) for label, c in zip(seen, counts)}

    def _zero_weights(self) -> tuple[np.ndarray, np.ndarray]:
        rows = 1 if len(self.classes_) == 2 else len(self.classes_)
        return np.zeros((rows, self.n_features_in_)), np.zeros(rows)

    def fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
            ) -> "SGDClassifier":
        """Fit for ``n_epochs`` epochs from zero weights (``classes`` saves a pass)."""
        return self._fit(X, y, sample_weight, classes, self.n_epochs, reset=True,
                         early_stopping=self.early_stopping)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
                    ) -> "SGDClassifier":
        """One more epoch over ``(X, y)``; ``classes`` is required on the first call."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, classes, 1, reset=first, early_stopping=False)

    def decision_function(self, X: Any) -> Any:
        """Signed distance to the separating hyperplane(s)."""
        X = self._check_X(X)
        n_out = None if len(self.classes_) == 2 else len(self.classes_)
        return apply_rows(_scores, X, self.coef_, self.intercept_, n_out=n_out)

    def predict(self, X: Any) -> Any:
        """Predicted class labels."""
        X = self._check_X(X)
        return apply_rows(_predict_labels, X, self.classes_, self.coef_, self.intercept_,
                          dtype=self.classes_.dtype)

    def _has_proba(self) -> bool:
        if self.loss not in ("log_loss", "modified_huber"):
            raise AttributeError(f"probability estimates are not available for loss="
                                 f"{self.loss!r}")
        return True

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (``log_loss`` and ``modified_huber`` losses)."""
        X = self._check_X(X)
        return apply_rows(_probabilities, X, self.loss, self.coef_, self.intercept_,
                          n_out=len(self.classes_))

    @available_if(_has_proba)
    def predict_log_proba(self, X: Any) -> Any:
        """Logarithm of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean (weighted) accuracy; reduced block by block for chunked input."""
        if is_chunked(X):
            return self._chunked_score(X, y, sample_weight)
        return super().score(X, y, sample_weight)


class SGDRegressor(RegressorMixin, _PartitionedSGD):
    """Linear regressor fitted by partitioned SGD."""

    __doc__ = (__doc__ or "") + _COMMON_DOC
    _sk_class = sk_linear.SGDRegressor
    _classifier = False

    def __init__(self, loss: str = "squared_error", *, penalty: str | None = "l2",
                 alpha: float = 1e-4, l1_ratio: float = 0.15, fit_intercept: bool = True,
                 n_epochs: int = 5, tol: float | None = 1e-3, epsilon: float = 0.1,
                 random_state: Any = None, learning_rate: str = "invscaling",
                 eta0: float = 0.01, power_t: float = 0.25, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 5,
                 sync_every: int | None = None, verbose: int = 0) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.n_epochs = n_epochs
        self.tol = tol
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.sync_every = sync_every
        self.verbose = verbose

    def _prepare_targets(self, blocks: RowBlocks, classes: Any, reset: bool) -> None:
        return None

    def _zero_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n_features_in_), np.zeros(1)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "SGDRegressor":
        """Fit for ``n_epochs`` epochs from zero weights."""
        return self._fit(X, y, sample_weight, None, self.n_epochs, reset=True,
                         early_stopping=self.early_stopping)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "SGDRegressor":
        """One more epoch over ``(X, y)``."""
        return self._fit(X, y, sample_weight, None, 1, reset=not hasattr(self, "coef_"),
                         early_stopping=False)

    def predict(self, X: Any) -> Any:
        """Predicted targets."""
        X = self._check_X(X)
        return apply_rows(_scores, X, self.coef_, self.intercept_)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R^2; reduced block by block for chunked input."""
        if is_chunked(X):
            return self._chunked_score(X, y, sample_weight)
        return super().score(X, y, sample_weight)

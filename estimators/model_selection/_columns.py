"""A ``ColumnTransformer`` step of a search as one node per branch and one joining them.

A branch (the same transformer with the same parameters on the same columns after the same
prefix, on the same fold) is fitted once however many candidates share it: a grid over one
branch's parameters refits only that branch.  The join stacks the branches' outputs side by
side as the ``ColumnTransformer``'s own ``fit_transform``/``transform`` do: transformers in
order, empty selections and ``"drop"`` skipped, the remainder last, weights applied, and the
sparse-or-dense choice made on the training output and kept for the test output.

Only plain cases are split (array input by integer, slice or boolean column selection; no
fit parameters, no ``set_output`` container): anything else is fitted as one step.
"""

from __future__ import annotations

import numbers
import time
from traceback import format_exc
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.compose import ColumnTransformer
from sklearn.compose._column_transformer import _is_empty_column_selection
from sklearn.utils import check_array
from sklearn.utils._indexing import _get_column_indices, _safe_indexing

from distml.estimators.model_selection._graph import (Failure, FoldData, Stage, _inputs,
                                                      _run_step, empty_stage, first_failure)
from distml.estimators.model_selection._task_env import on_worker

__all__ = ["REMAINDER", "column_branches", "run_column_branch", "run_column_join"]

#: The columns of the remainder branch: those no transformer selects (known on the worker).
REMAINDER = "__remainder__"


def _plain_columns(columns: Any) -> bool:
    if isinstance(columns, slice):
        return all(v is None or isinstance(v, numbers.Integral)
                   for v in (columns.start, columns.stop, columns.step))
    if isinstance(columns, numbers.Integral) and not isinstance(columns, bool):
        return True
    if isinstance(columns, (list, tuple, np.ndarray)):
        kinds = {type(c) for c in np.asarray(columns).ravel().tolist()} or {int}
        return kinds <= {int} or kinds <= {bool}
    return False


def column_branches(step: Any) -> list[tuple[str, Any, Any, Any]] | None:
    """``[(name, transformer, columns, weight), ...]`` of a ColumnTransformer to be split into
    branch nodes (``columns`` is :data:`REMAINDER` for the remainder), or None when it must be
    fitted whole."""
    if not isinstance(step, ColumnTransformer):
        return None
    if getattr(step, "_sklearn_output_config", None) or get_config()["transform_output"] \
            != "default":
        return None
    weights = step.transformer_weights or {}
    out = []
    for name, trans, columns in step.transformers:
        if callable(columns) or not _plain_columns(columns):
            return None
        out.append((name, trans, columns, weights.get(name)))
    out.append(("remainder", step.remainder, REMAINDER, weights.get("remainder")))
    return [b for b in out if not (isinstance(b[1], str) and b[1] == "drop")]


def _selected(X: Any, columns: Any, all_columns: list) -> Any:
    """The branch's columns of ``X`` (as the ColumnTransformer selects them), or None when
    empty."""
    if isinstance(columns, str) and columns == REMAINDER:
        n = X.shape[1]
        chosen = set()
        for c in all_columns:
            chosen.update(_get_column_indices(X, c))
        columns = sorted(set(range(n)) - chosen)
    if _is_empty_column_selection(columns):
        return None
    return _safe_indexing(X, columns, axis=1)


def _run_branch(trans: Any, fold: FoldData, source: Any, columns: Any, all_columns: list,
                weight: Any, error_score: Any) -> Stage | Failure | None:
    if isinstance(source, Failure):
        return source
    X_train, X_test, spent, warned = _inputs(fold, source)
    start = time.time()
    try:
        train = _selected(X_train, columns, all_columns)
        test = _selected(X_test, columns, all_columns)
    except Exception:
        if error_score == "raise":
            raise
        return Failure(format_exc(), spent + time.time() - start, warned)
    if train is None:
        return None
    if isinstance(trans, str) and trans == "passthrough":
        from sklearn.preprocessing import FunctionTransformer
        trans = FunctionTransformer(accept_sparse=True, check_inverse=False,
                                    feature_names_out="one-to-one")
    out = _run_step(trans, fold, Stage(train, test, spent, warned), {}, error_score)
    if isinstance(out, Stage) and weight is not None:
        out.X_train, out.X_test = out.X_train * weight, out.X_test * weight
    return out


def run_column_branch(trans: Any, fold: FoldData, source: Any, columns: Any, all_columns: list,
                      weight: Any, error_score: Any) -> Stage | Failure | None:
    """Fit one ColumnTransformer branch on its columns of the train rows; transform both sets
    (None when it selects no column: the ColumnTransformer skips it)."""
    return on_worker(_run_branch, trans, fold, source, columns, all_columns, weight,
                     error_score)


def _stack(parts: list, sparse_output: bool) -> Any:
    if sparse_output:
        return sp.hstack([check_array(p, accept_sparse=True, ensure_all_finite=False)
                          for p in parts]).tocsr()
    return np.hstack([p.toarray() if sp.issparse(p) else p for p in parts])


def _check_2d(names: list[str], parts: list[Stage]) -> None:
    for name, b in zip(names, parts):
        if getattr(b.X_train, "ndim", 0) != 2:
            raise ValueError(f"The output of the '{name}' transformer should be 2D (numpy "
                             "array, scipy sparse array, dataframe).")


def run_column_join(fold: FoldData, source: Any, names: list[str], sparse_threshold: float,
                    error_score: Any, *branches: Any) -> Stage | Failure:
    """Stack the branches' outputs as the ColumnTransformer would."""
    failed = first_failure(source, branches)
    if failed is not None:
        return failed
    X_train, X_test, spent, warned = _inputs(fold, source)
    kept = [(n, b) for n, b in zip(names, branches) if b is not None]
    parts = [b for _, b in kept]
    if not parts:
        return empty_stage(X_train, X_test, spent, warned)
    try:
        _check_2d([n for n, _ in kept], parts)
    except ValueError:
        if error_score == "raise":
            raise
        return Failure(format_exc(), spent + sum(b.fit_time - spent for b in parts), warned)
    sparse_output = False
    if any(sp.issparse(b.X_train) for b in parts):
        nnz = sum(b.X_train.nnz if sp.issparse(b.X_train) else b.X_train.size for b in parts)
        total = sum(b.X_train.shape[0] * b.X_train.shape[1] for b in parts)
        sparse_output = nnz / total < sparse_threshold
    own = sum(b.fit_time - spent for b in parts)
    return Stage(_stack([b.X_train for b in parts], sparse_output),
                 _stack([b.X_test for b in parts], sparse_output), spent + own,
                 warned + [w for b in parts for w in b.warnings[len(warned):]])

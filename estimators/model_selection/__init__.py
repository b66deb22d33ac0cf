"""Model selection on the cluster: train/test splits of chunked data, grid and randomized
search with shared pipeline work (scikit-learn's API and results), and adaptive searches that
stop weak models early (successive halving, Hyperband).

``train_test_split`` and ``block_folds`` (``_split``); ``GridSearchCV`` and
``RandomizedSearchCV`` (``_search``, planned by ``_graph``, run by ``_run``, chunked input in
``_chunked``, resumable through ``_checkpoint``); ``SuccessiveHalvingSearchCV`` and
``HyperbandSearchCV`` (``_incremental``).
"""

from distml.estimators.model_selection._incremental import (HyperbandSearchCV,
                                                            SuccessiveHalvingSearchCV)
from distml.estimators.model_selection._search import GridSearchCV, RandomizedSearchCV
from distml.estimators.model_selection._split import block_folds, train_test_split

__all__ = ["GridSearchCV", "HyperbandSearchCV", "RandomizedSearchCV", "SuccessiveHalvingSearchCV",
           "block_folds", "train_test_split"]

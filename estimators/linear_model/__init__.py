"""Linear models trained on chunked data: L-BFGS on tree-reduced gradients (``_glm``) and
partitioned SGD with weight averaging (``_sgd``)."""

from distml.estimators.linear_model._glm import LinearRegression, LogisticRegression, Ridge
from distml.estimators.linear_model._sgd import SGDClassifier, SGDRegressor

__all__ = ["LinearRegression", "LogisticRegression", "Ridge", "SGDClassifier", "SGDRegressor"]

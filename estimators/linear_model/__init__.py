"""Linear models trained on chunked data: L-BFGS on tree-reduced gradients (``_glm``) and
partitioned SGD (``_sgd``)."""

from distml.estimators.linear_model._glm import LinearRegression, LogisticRegression, Ridge

__all__ = ["LinearRegression", "LogisticRegression", "Ridge"]

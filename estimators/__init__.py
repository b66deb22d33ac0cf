"""distml.estimators: scikit-learn compatible estimators that train on chunked data on the
cluster. Shipped from the top-level ``estimators/`` folder through setuptools' package-dir
mapping."""

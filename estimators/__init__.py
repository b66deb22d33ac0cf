"""distml.estimators: scikit-learn compatible estimators that train on chunked data on the
cluster (shipped from the top-level ``estimators/`` folder through setuptools' package-dir
mapping).

Submodules: ``linear_model`` (LogisticRegression, LinearRegression, Ridge; partitioned SGD),
``preprocessing`` (StandardScaler, MinMaxScaler), ``metrics``, ``model_selection``
(train_test_split; GridSearchCV and RandomizedSearchCV with shared pipeline work;
SuccessiveHalvingSearchCV and HyperbandSearchCV), ``wrappers`` (Incremental, ParallelPostFit).
"""

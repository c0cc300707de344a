"""Review of finished searches: the report (numbers, files, plots), retraining the best configs, the MLflow UI, run names."""

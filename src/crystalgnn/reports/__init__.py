"""Run-directory outputs shared by train, predict, evaluate and the forest baselines: prediction
CSVs, metrics, plots. Reports take arrays, never models, so every kind of model writes the same files."""

"""Evaluation: survival metrics (Harrell/Uno C, td-AUC, Brier), calibration, the cross-validation protocol, baselines and the linear probe."""

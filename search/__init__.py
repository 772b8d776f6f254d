"""Optuna search over U-Net training and counting settings, and submission export."""

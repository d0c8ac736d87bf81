"""Drift detection: features per batch, windowed two-sample KS tests, alerts, and the action after one."""

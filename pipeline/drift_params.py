"""The drift monitor's and the action policy's parameters from the settings (`operators/` never imports `pipeline/`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.settings import Settings

if TYPE_CHECKING:
    from operators.drift.actions import ActionParams
    from operators.drift.logic import DriftParams


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def drift_params(s: Settings) -> DriftParams:
    """`DriftParams` of the `LIVEREC_DRIFT_*` settings, stamped with the job name and model version."""
    from operators.drift.logic import DriftParams, WindowSpec
    from operators.serving.logic import model_version

    return DriftParams(
        features=_names(s.drift_features),
        reference=WindowSpec(s.drift_reference_samples, s.drift_reference_ms, s.drift_min_samples),
        current=WindowSpec(s.drift_window_samples, s.drift_window_ms, s.drift_min_samples),
        alpha=s.drift_alpha, min_statistic=s.drift_min_statistic, rebaseline=s.drift_rebaseline,
        quiet_windows=s.drift_quiet_windows, warmup_ms=s.drift_warmup_ms, seed=s.model_seed, job_name=s.job_name,
        model_version=model_version(s.embedding_dim, s.negatives, s.model_seed),
    )


def action_params(s: Settings) -> ActionParams:
    """`ActionParams` of the `LIVEREC_DRIFT_ACTION*` settings."""
    from operators.drift.actions import ActionParams

    return ActionParams(action=s.drift_action, features=_names(s.drift_action_features),
                        factor=s.drift_action_factor, duration_ms=s.drift_action_ms)

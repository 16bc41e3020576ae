"""Experimentation group wiring: the tuning experiment asset, its on-demand job, the promotion job
and the sensor that retrains after a promotion (built around the training job, like inference's)."""

from fraud_assets.defs.experimentation.assets import tuning_experiment
from fraud_assets.defs.experimentation.jobs import (
    build_promotion_retraining_sensor,
    promote_experiment,
    tuning_experiment_job,
)

experimentation_assets = [tuning_experiment]
experimentation_jobs = [tuning_experiment_job, promote_experiment]


def experimentation_sensors(training_job):
    return [build_promotion_retraining_sensor(training_job)]


__all__ = ["experimentation_assets", "experimentation_jobs", "experimentation_sensors"]

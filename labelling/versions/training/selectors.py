"""Reads of training: a train run's version and its curve."""

from __future__ import annotations

from labelling.models import GeneratorVersion, PipelineRun, TrainingStep

CURVE_FIELDS = ("step", "loss", "reward_mean", "reward_std", "kl", "tokens_per_s")


def train_run_version(run: PipelineRun) -> GeneratorVersion | None:
    return GeneratorVersion.objects.filter(train_run=run).select_related("parent", "dataset_version").first()


def training_curve(run_id: int) -> list[dict]:
    """The logged steps, oldest first, as the chart reads them."""
    return list(TrainingStep.objects.filter(run_id=run_id).order_by("step").values(*CURVE_FIELDS))

"""The seam to the model side: labelling creates runs, `inference` executes them.

`inference` registers how a run is queued and how the backend's health is read when Django
starts (`InferenceConfig.ready`), so labelling never imports inference and the import graph
between the two apps runs one way.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

_enqueue: Callable[[int], object] | None = None
_health: Callable[[], dict] | None = None
_train_params: Callable[..., dict] | None = None
_judge_prompt_sha256: Callable[[dict], str] | None = None
_campaign_poll: Callable[[int], object] | None = None


def register(
    *,
    enqueue: Callable[[int], object],
    health: Callable[[], dict],
    train_params: Callable[..., dict] | None = None,
    judge_prompt_sha256: Callable[[dict], str] | None = None,
    campaign_poll: Callable[[int], object] | None = None,
) -> None:
    global _enqueue, _health, _train_params, _judge_prompt_sha256, _campaign_poll
    _enqueue, _health, _train_params, _judge_prompt_sha256 = enqueue, health, train_params, judge_prompt_sha256
    _campaign_poll = campaign_poll


class TrainerUnavailable(Exception):
    """This install cannot train (the trainer's packages are missing where it would run); the
    text names what to install."""


def _registered(hook):
    if hook is None:
        raise ImproperlyConfigured("no run executor is registered: is 'inference' in INSTALLED_APPS?")
    return hook


def enqueue(run_id: int) -> None:
    """Queue the run for a worker (call it after the run's row is committed)."""
    _registered(_enqueue)(run_id)


def campaign_poll(campaign_id: int) -> None:
    """Queue a look at the campaign: its open round moves on as far as it can (labelling.campaigns.runner)."""
    _registered(_campaign_poll)(campaign_id)


def health() -> dict:
    """The inference backend's health, as the dashboard shows it."""
    return _registered(_health)()


def train_params(method: str, params: dict, *, base_hf_dir=None) -> dict:
    """A train run's settings with the trainer's defaults (for the model in `base_hf_dir`: a real
    model trains LoRA adapters) filled in; ValueError naming what is wrong (an unknown key, a
    value out of range), TrainerUnavailable when the trainer that would run it cannot."""
    return _registered(_train_params)(method, params, base_hf_dir=base_hf_dir)


def judge_prompt_sha256(rubric_spec: dict) -> str:
    """The sha256 of everything the judge is told for this rubric (prompt, template, guidance)."""
    return _registered(_judge_prompt_sha256)(rubric_spec)

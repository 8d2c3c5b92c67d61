"""App config for inference (management commands, huey tasks, run execution)."""

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        # The one seam labelling reaches the model side through: runs it starts are queued
        # on huey here (train runs on their own queue), and the dashboard's health fragment reads this backend.
        from inference.judging import judge_prompt_sha256
        from inference.serving import get_backend
        from inference.tasks import campaign_poll, queue_run
        from inference.versions.train_runs import train_params
        from labelling.runs import executor

        executor.register(
            enqueue=queue_run,
            health=lambda: get_backend().health(),
            train_params=train_params,
            judge_prompt_sha256=judge_prompt_sha256,
            campaign_poll=campaign_poll,
        )

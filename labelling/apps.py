"""App config for the labelling domain."""

from django.apps import AppConfig


class LabellingConfig(AppConfig):
    name = "labelling"
    verbose_name = "Labelling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from labelling.access import roles, throttle  # noqa: F401 - their signal receivers: staff follows the admin role; failed sign-ins are counted

        # The run pages show other rooms' work; those rooms start runs, so they plug in here
        # rather than being imported by runs (labelling.runs.views).
        from labelling.characters import views as character_views
        from labelling.models import PipelineRun
        from labelling.runs import views as run_views
        from labelling.versions.training import views as training_views

        run_views.NEW_PAGE_FORMS["sheets"] = character_views.sheet_form
        run_views.RUN_DETAIL[PipelineRun.Kind.TRAIN] = training_views.training_context

"""URLs of the pages: the dashboard, runs, review, characters, model versions (the API mounts in shaping_web.api)."""

from django.urls import path

from labelling import views
from labelling.campaigns import views as campaign_views
from labelling.characters import views as character_views
from labelling.explorer import views as explorer_views
from labelling.review import views as review_views
from labelling.runs import views as run_views
from labelling.versions.evaluation import views as evaluation_views
from labelling.versions.generators import views as generator_views
from labelling.versions.training import views as training_views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("inference/health", views.inference_health, name="inference_health"),
    path("runs/new", run_views.run_new, name="run_new"),
    path("runs/sheets", character_views.sheet_run_new, name="sheet_run_new"),
    path("runs/puzzles", run_views.puzzles_new, name="puzzles_new"),
    path("runs/<int:run_id>/", run_views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/cancel", run_views.run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/resume", run_views.run_resume, name="run_resume"),
    path("runs/<int:run_id>/curve", training_views.training_curve, name="training_curve"),
    path("runs/<int:run_id>/rows", explorer_views.run_rows, name="explorer_run"),
    path("groups/<int:group_id>/", explorer_views.group_detail, name="explorer_group"),
    path("datasets/<int:version_id>/", explorer_views.dataset_preview, name="dataset_preview"),
    path("datasets/<int:version_id>/rows", explorer_views.dataset_rows, name="explorer_dataset"),
    path("models/", generator_views.model_versions, name="model_versions"),
    path("models/train", training_views.train_new, name="train_new"),
    path("campaigns/", campaign_views.campaign_list, name="campaign_list"),
    path("campaigns/<slug:slug>/", campaign_views.campaign_detail, name="campaign_detail"),
    path("campaigns/<slug:slug>/action", campaign_views.campaign_action, name="campaign_action"),
    path("evaluations/<int:evaluation_id>/", evaluation_views.evaluation_detail, name="evaluation_detail"),
    path("review/", review_views.review_queue, name="review_queue"),
    path("review/ab/", evaluation_views.ab_queue, name="ab_queue"),
    path("review/ab/<int:choice_id>/choose", evaluation_views.ab_choose, name="ab_choose"),
    path("review/ab/<int:choice_id>/skip", evaluation_views.ab_skip, name="ab_skip"),
    path("stats/", review_views.stats, name="stats"),
    path("sheets/<int:generation_id>/appearance.glb", character_views.sheet_appearance, name="sheet_appearance"),
    path("sheets/<int:generation_id>/promote", character_views.sheet_promote, name="sheet_promote"),
    path("characters/<slug:slug>/", character_views.character_detail, name="character_detail"),
    path("media/<path:path>", views.media, name="media"),
    path("review/undo", review_views.review_undo, name="review_undo"),
    path("review/<int:assignment_id>/", review_views.review_assignment, name="review_assignment"),
    path("review/<int:assignment_id>/submit", review_views.review_submit, name="review_submit"),
    path("review/<int:assignment_id>/skip", review_views.review_skip, name="review_skip"),
    path(
        "review/<int:assignment_id>/rewrite/<int:generation_id>",
        review_views.review_rewrite,
        name="review_rewrite",
    ),
]

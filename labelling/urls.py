"""URLs of the review UI."""

from django.urls import path

from labelling import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
]

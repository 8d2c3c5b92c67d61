"""URL map: the review UI, the admin, auth and the JSON API."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from labelling.access.throttle import ThrottledAdminLoginForm, ThrottledLoginForm
from shaping_web.api import api

admin.site.site_header = "Shaping admin"
admin.site.site_title = "Shaping"
admin.site.login_form = ThrottledAdminLoginForm  # the login throttle, as on the login page


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Pages without an icon link (the admin's, the API docs) ask browsers for /favicon.ico.
    The static URL is looked up per request: in production it names the hashed file, which
    exists only once collectstatic has run."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("favicon.ico", favicon),
    path("", include("labelling.urls")),
]

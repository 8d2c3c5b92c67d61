"""URL map: the review UI, the admin, auth and the JSON API."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from labelling.access.throttle import ThrottledAdminLoginForm, ThrottledLoginForm
from shaping_web.api import api

admin.site.site_header = "Shaping admin"
admin.site.site_title = "Shaping"
admin.site.login_form = ThrottledAdminLoginForm  # the login throttle, as on the login page

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("labelling.urls")),
]

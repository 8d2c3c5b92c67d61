"""Project middleware: login required everywhere except the JSON API (which answers 401 JSON
with its own token auth), and a Content-Security-Policy on every response."""

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.utils.deprecation import MiddlewareMixin

API_PREFIX = "/api/"


class LoginRequiredMiddleware(DjangoLoginRequired):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith(API_PREFIX):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """settings.CONTENT_SECURITY_POLICY on every response that sets none of its own: a second
    line of defence behind escaping (scripts only from this site's files, no inline script)."""

    def process_response(self, request, response):
        if "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY
        return response

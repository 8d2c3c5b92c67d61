"""Project middleware: login required everywhere except the JSON API (which answers 401 JSON
with its own token auth), no NUL character in what a page is sent, and a
Content-Security-Policy on every response."""

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from labelling import errors

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


class NulRefusedMiddleware(MiddlewareMixin):
    """Text holding the NUL character never reaches a page: PostgreSQL stores no NUL in text and
    fails on a lookup or a write with one (a 500), where SQLite finds nothing or stores it. A URL
    path holding one names no page (404); a query parameter, form field or upload name holding
    one is a 400 naming it, before the view reads anything. Runs after the login check, so an
    anonymous visitor is still sent to sign in first. The API refuses NUL itself, with a 422 in
    its own error schema (labelling.api.common.nul_fields), and so do the importers, for a NUL
    written as an escape inside an uploaded file (a problem on its line)."""

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if request.path_info.startswith(API_PREFIX):
            return None
        if errors.NUL in request.path:
            raise Http404("no such page")
        where = _nul_names(request.GET)
        if request.method == "POST":
            where += _nul_names(request.POST)
            where += [name for name, upload in request.FILES.items() if errors.holds_nul([name, upload.name or ""])]
        if not where:
            return None
        return errors.refusal(f"{errors.NUL_REFUSED}: {', '.join(map(repr, where))}", 400)


def _nul_names(data) -> list[str]:
    """The names in a QueryDict whose name or any value holds NUL."""
    return [name for name, values in data.lists() if errors.holds_nul([name, *values])]

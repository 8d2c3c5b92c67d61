"""Login required everywhere, except the JSON API, which answers 401 JSON with its own token auth."""

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired

API_PREFIX = "/api/"


class LoginRequiredMiddleware(DjangoLoginRequired):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith(API_PREFIX):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

"""Page access by role: reviewers (both roles) and admins; anyone else gets 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from labelling.access import roles


def reviewer_required(view: Callable) -> Callable:
    """Both roles review; a signed-in user in no role gets 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if roles.user_role(request.user) is None:
            raise PermissionDenied("reviewers only")
        return view(request, *args, **kwargs)

    return wrapped


def admin_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not roles.is_admin(request.user):
            raise PermissionDenied("admins only")
        return view(request, *args, **kwargs)

    return wrapped

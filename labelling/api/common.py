"""What every router of the JSON API shares: the bearer-token auth and the admin check,
pagination, the one error schema and the response maps built from it, the exception
handlers that turn a refusal into that schema, and the JSON 404 for any other path."""

import re
from typing import Annotated, Any, Union, get_args

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Router, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as BodyInvalid
from ninja.pagination import LimitOffsetPagination
from ninja.parser import Parser
from ninja.security import HttpBearer
from pydantic import ConfigDict

from labelling import errors
from labelling.access import roles, tokens
from labelling.catalogue.importers import ImportFailed
from labelling.datasets.storage import DatasetCorrupt
from shaping_core import strict

MAX_ID = 2**63 - 1  # the database's integer range: a larger id is a 422, not an overflow
MAX_NUMBER = 2**31 - 1  # the same for a version number (a rubric's or a dataset's)


# The field that tells a tagged union's bodies apart, and the tags `tagged_union` has joined: an
# error inside one of those bodies names the field alone, not the tag pydantic puts before it.
TAG = "kind"
UNION_TAGS: set[str] = set()


def tagged_union(*schemas: type[Schema]) -> Any:
    """One body that is one of `schemas`, told apart by their `kind` field (a Literal each), as
    OpenAPI's oneOf with a discriminator. Take it as `body: Body[...]`."""
    for schema in schemas:
        UNION_TAGS.update(get_args(schema.model_fields[TAG].annotation))
    return Annotated[Union[schemas], Field(discriminator=TAG)]  # noqa: UP007 (a tuple of types)


# `\u0000` in JSON text, not preceded by an escaped backslash (`\\u0000` is the six characters).
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class StrictParser(Parser):
    """Bodies as `shaping_core.strict` reads JSON: no NaN or infinity, nesting at most
    MAX_DEPTH deep. A refusal is the 400 every unreadable body gets, saying why."""

    def parse_body(self, request: HttpRequest):
        return strict.json_loads(request.body)


def unreadable(request: HttpRequest, exc: HttpError, *, api: NinjaAPI) -> HttpResponse:
    """ninja's answer to an HttpError, with the reason when the body broke the strict reader."""
    detail = str(exc)
    if isinstance(exc.__cause__, strict.NotStrictJson):
        detail = f"{detail}: {exc.__cause__}"
    return api.create_response(request, {"detail": detail}, status=exc.status_code)


class TokenAuth(HttpBearer):
    """`Authorization: Bearer shp_...`: the token's user becomes `request.user`. A token sees no
    more than its user does in the browser: a user in no role sees nothing (403 everywhere)."""

    def authenticate(self, request: HttpRequest, token: str):
        row = tokens.token_authenticate(token)
        if row is None:
            return None
        request.user = row.user
        if roles.user_role(row.user) is None:
            raise HttpError(403, "this token's user has no role: ask an admin to make them a reviewer")
        if where := nul_fields(request):  # before any operation reads the request: 422
            raise BodyInvalid([{"loc": (name,), "msg": errors.NUL_REFUSED} for name in where])
        return row


def nul_fields(request: HttpRequest) -> list[str]:
    """Where the request's text holds the NUL character: in the path, a query parameter or a
    field of a JSON body. PostgreSQL stores no NUL in text, and a lookup with one fails there
    (where SQLite finds nothing): the API takes it nowhere, the same on both."""
    found = ["url"] if errors.NUL in request.path else []
    found += [key for key, values in request.GET.lists() if errors.holds_nul([key, *values])]
    # Parsed only when its bytes hold a NUL escape: a 20 MB body without one costs one scan.
    if request.body and NUL_ESCAPE.search(request.body):
        try:
            body = strict.json_loads(request.body)
        except ValueError:  # not (strict) JSON: the operation refuses it (400) as it would anyway
            body = None
        if isinstance(body, dict):
            found += [key for key, value in body.items() if errors.holds_nul([key, value])]
        elif errors.holds_nul(body):
            found.append("body")
    return found


def named(model, slug: str | None, field: str):
    """The row a body names by slug (None for none); a 400 naming the field if there is no such row."""
    if slug is None:
        return None
    row = model.objects.filter(slug=slug).first()
    if row is None:
        raise ValidationError({field: f"no {model._meta.verbose_name} {slug!r}"})
    return row


def admin_required(request: HttpRequest) -> None:
    """A reviewer's token reads; writes, judgments and datasets need an admin's."""
    if not roles.is_admin(request.user):
        raise HttpError(403, "this needs an admin's token")


def reviewer_required(request: HttpRequest) -> None:
    """Reviewing needs a role: a reviewer's or an admin's token, not one of a user in no role."""
    if roles.user_role(request.user) is None:
        raise HttpError(403, "this needs a reviewer's or an admin's token")


class Pages(LimitOffsetPagination):
    """?limit= (1..500, default 100) and ?offset=."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=500)
        offset: int = Field(0, ge=0, le=10**9)


class BodyIn(Schema):
    """A request body: a field it does not know is refused (a 422 naming it), never ignored, so a
    misspelt or misplaced setting ("temprature", a train setting on a generate run) is not
    silently dropped."""

    model_config = ConfigDict(extra="forbid")


# Every error the API answers: a line of text and, where a field is to blame, its message.
class Error(Schema):
    detail: str
    errors: dict[str, str] = {}


# What any operation may answer besides success: a missing or wrong token (401), a token whose
# user has no role (403), a value of the wrong type in the path, query or body (422). ADMIN is
# the same map: there, a reviewer's token is refused with the same 403.
READ = {401: Error, 403: Error, 422: Error}
ADMIN = READ


# --- exception handlers (shaping_web/api.py registers them, binding `api`) --------------------


def refused(request: HttpRequest, exc: ValidationError, *, api: NinjaAPI) -> HttpResponse:
    """A service refusing a well-formed request (an unknown slug, a score off its scale): 400."""
    body = {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)}
    return api.create_response(request, body, status=400)


def key_malformed(request: HttpRequest, exc: ValidationError, *, api: NinjaAPI) -> HttpResponse:
    """An Idempotency-Key header no run can carry (too long): 422, like any malformed value."""
    body = {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)}
    return api.create_response(request, body, status=422)


def key_conflict(request: HttpRequest, exc: ValidationError, *, api: NinjaAPI) -> HttpResponse:
    """An Idempotency-Key this user already sent with a different request: 409."""
    body = {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)}
    return api.create_response(request, body, status=409)


def body_too_big(request: HttpRequest, exc: RequestDataTooBig, *, api: NinjaAPI) -> HttpResponse:
    """A body past settings.DATA_UPLOAD_MAX_MEMORY_SIZE (a huge import, say): 400, in JSON."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = {"detail": f"the request body is over {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)", "errors": {}}
    return api.create_response(request, body, status=400)


def malformed(request: HttpRequest, exc: BodyInvalid, *, api: NinjaAPI) -> HttpResponse:
    """A body, query or path value of the wrong shape or type: 422, naming each field."""
    fields = {}
    for err in exc.errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "payload", "query", "path")]
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            loc = [*loc, TAG]  # the tag that chose no body: name it
        elif loc and loc[0] in UNION_TAGS:
            loc = loc[1:]  # inside the body the tag chose
        fields[".".join(loc) or "body"] = str(err.get("msg", "invalid"))
    detail = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return api.create_response(request, {"detail": detail, "errors": fields}, status=422)


def import_refused(request: HttpRequest, exc: ImportFailed, *, api: NinjaAPI) -> HttpResponse:
    """An import with problems: 400, each keyed by its line and field (`"line 2: persona"`)."""
    fields = {}
    for p in exc.problems:
        key = p.field or p.file
        if p.line and not p.field.startswith(p.file):
            key = f"line {p.line}: {key}"
        fields[key] = p.message
    return api.create_response(request, {"detail": str(exc), "errors": fields}, status=400)


def dataset_corrupt(request: HttpRequest, exc: DatasetCorrupt, *, api: NinjaAPI) -> HttpResponse:
    """A dataset version whose file is missing or changed is never served: 409."""
    return api.create_response(request, {"detail": str(exc), "errors": {}}, status=409)


# --- any other path ------------------------------------------------------------------------

# Mounted last: its path matches everything, so it only answers what no other router claims.
fallback = Router()


@fallback.api_operation(
    ["GET", "POST", "PUT", "PATCH", "DELETE"],
    "/{path:rest}",
    auth=None,
    response={404: Error},
    operation_id="not_found",
    include_in_schema=False,
)
def not_found(request: HttpRequest, rest: str):
    """Any other path under /api/: JSON, like every other answer."""
    return Status(404, {"detail": f"no endpoint /api/{rest}", "errors": {}})

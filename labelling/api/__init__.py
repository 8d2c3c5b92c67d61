"""The JSON API's routers (django-ninja), one module per resource, each with its own schemas.

catalogue (characters, rubrics, prompt sets, imports), characters (sheets and puzzles), runs,
generations, judgments, datasets, model_versions, evaluations, review (a reviewer's groups) and
pairs (a reviewer's blind A/B pairs) each hold a `router`; common holds what they share: the
bearer-token auth, pagination, the `Error` schema, the exception handlers and the JSON 404.
The one `NinjaAPI` that mounts them lives in the project package, `shaping_web/api.py`.
Routes are thin: an access check and one call into the domain's services or selectors.
"""

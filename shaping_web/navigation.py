"""The top bar's sections, and which one the page on screen belongs to (marked aria-current)."""

from django.http import HttpRequest

# The first section whose URL-name prefix matches the page's URL name is current.
SECTIONS = (
    ("ab", ("ab_",)),
    ("review", ("review_",)),
    ("stats", ("stats",)),
    ("models", ("model_versions", "train_new", "evaluation_", "training_curve")),
    ("dashboard", ("dashboard", "run_", "puzzles_", "sheet_run", "character_")),
)


def section(request: HttpRequest) -> dict:
    match = getattr(request, "resolver_match", None)
    name = (match.url_name or "") if match else ""
    current = next((key for key, prefixes in SECTIONS if name.startswith(prefixes)), "")
    return {"nav_section": current}

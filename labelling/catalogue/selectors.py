"""Catalogue reads: the latest version of a rubric, characters with their counts, and the exact
messages a generation is made from."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from labelling.models import Character, Prompt, Rubric


def rubric_latest(slug: str) -> Rubric | None:
    return Rubric.objects.filter(slug=slug).order_by("-version").first()


def prompt_messages_for(character: Character, prompt: Prompt) -> list[dict]:
    """The exact messages a generation is made from: persona first, then the prompt."""
    messages = [m for m in prompt.messages if m.get("role") != "system"]
    return [character.system_message(), *messages]


def characters_with_counts() -> QuerySet[Character]:
    return Character.objects.annotate(group_count=Count("groups")).order_by("name")

"""Trainer formats: the rows of each dataset kind (grpo, grpo_prompts, dpo, kto, sft), with
TRL's field names (docs/datasets.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.core.exceptions import ValidationError

from labelling.datasets.filters import DatasetFilter
from labelling.datasets.rewards import EPS, Completion, GroupRow, iter_groups
from labelling.models import (
    ABPair,
    DatasetVersion,
    Generation,
    PairChoice,
    Rubric,
)

FORMATS = {k.value for k in DatasetVersion.Kind}


def _prompt(group: GroupRow, completion: Completion | None = None) -> list[dict]:
    messages = completion.generation.messages if completion else None
    if not messages:
        messages = ([group.character.system_message()] if group.character else []) + list(group.prompt_messages)
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _assistant(completion: Completion) -> list[dict]:
    return [{"role": "assistant", "content": completion.generation.raw_text or completion.generation.text}]


def rows_for(
    kind: str,
    f: DatasetFilter,
    rubric: Rubric | None,
    groups: Iterable[tuple[GroupRow, list[Completion]]] | None = None,
    calibration: dict | None = None,
) -> Iterator[dict]:
    """The format's rows for the selected groups (`groups` replaces the database read)."""
    label = f"{rubric.slug}@v{rubric.version}" if rubric else None
    selected: set[int] = set()  # dpo: the groups whose blind A/B pairs may join the rows
    for group, completions in iter_groups(f, rubric, calibration) if groups is None else groups:
        if kind == DatasetVersion.Kind.DPO:
            selected.add(group.pk)
        originals = [c for c in completions if c.generation.revision == 0]
        base = {
            "group_id": group.pk,
            "character": group.character.slug if group.character else None,
            "rubric_version": label,
        }
        if kind == DatasetVersion.Kind.GRPO:
            rewarded = [c for c in originals if c.reward is not None]
            if rewarded:
                yield {
                    **base,
                    "id": f"g{group.pk}",
                    "prompt": _prompt(group, rewarded[0]),
                    "completions": [_assistant(c) for c in rewarded],
                    "rewards": [c.reward for c in rewarded],
                    "advantages": [c.advantage for c in rewarded],
                    "scores": [c.scores for c in rewarded],
                    "reward_sources": [c.source for c in rewarded],
                    "generation_ids": [c.generation.pk for c in rewarded],
                }
        elif kind == DatasetVersion.Kind.GRPO_PROMPTS:
            yield {**base, "id": f"g{group.pk}", "prompt": _prompt(group, originals[0] if originals else None)}
        elif kind == DatasetVersion.Kind.DPO:
            yield from _pairs(group, completions, base, f.min_margin)
        elif kind == DatasetVersion.Kind.KTO:
            for c in originals:
                if c.advantage is not None and c.advantage != 0:
                    yield {
                        **base,
                        "id": f"c{c.generation.pk}",
                        "prompt": _prompt(group, c),
                        "completion": _assistant(c),
                        "label": c.advantage > 0,
                        "reward": c.reward,
                    }
        elif kind == DatasetVersion.Kind.SFT:
            best = max(
                (c for c in completions if c.reward is not None and c.generation.think_valid),
                key=lambda c: (c.reward, -c.generation.pk),
                default=None,
            )
            if best is not None:
                yield {
                    **base,
                    "id": f"c{best.generation.pk}",
                    "messages": _prompt(group, best) + _assistant(best),
                    "reward": best.reward,
                }
        else:
            raise ValidationError({"kind": f"unknown format {kind!r} ({', '.join(sorted(FORMATS))})"})
    if kind == DatasetVersion.Kind.DPO:
        yield from _ab_pairs(selected, label)


def _ab_pairs(selected: set[int], label: str | None) -> Iterator[dict]:
    """Blind A/B choices on two selected completions: the one the reviewers leaned to is chosen."""
    for chosen, rejected, margin in ab_dpo_rows(selected):
        yield {
            "group_id": chosen.group_id,
            "character": chosen.group.character.slug,
            "rubric_version": label,
            "id": f"ab{chosen.pk}>{rejected.pk}",
            "prompt": [{"role": m["role"], "content": m["content"]} for m in chosen.messages],
            "chosen": [{"role": "assistant", "content": chosen.raw_text or chosen.text}],
            "rejected": [{"role": "assistant", "content": rejected.raw_text or rejected.text}],
            "margin": margin,
            "origin": "ab",
        }


def _pairs(group: GroupRow, completions: list[Completion], base: dict, min_margin: float) -> Iterator[dict]:
    """Pairs by reward gap (ties never pair), and every rewrite over the completion it revised."""
    seen = set()
    by_id = {c.generation.pk: c for c in completions}
    for c in completions:  # a reviewer's rewrite is chosen over its parent, whatever the scores
        parent = by_id.get(c.generation.parent_id)
        if c.generation.source == Generation.Source.HUMAN_REWRITE and parent is not None:
            seen.add((c.generation.pk, parent.generation.pk))
            margin = round(c.reward - parent.reward, 6) if c.reward is not None and parent.reward is not None else None
            yield {
                **base,
                "id": f"p{c.generation.pk}>{parent.generation.pk}",
                "prompt": _prompt(group, parent),
                "chosen": _assistant(c),
                "rejected": _assistant(parent),
                "margin": margin,
                "origin": "rewrite",
            }
    rewarded = sorted(
        (c for c in completions if c.reward is not None and c.generation.revision == 0),
        key=lambda c: c.generation.index,
    )
    for i, a in enumerate(rewarded):
        for b in rewarded[i + 1 :]:
            if abs(a.reward - b.reward) < max(min_margin, EPS):
                continue
            chosen, rejected = (a, b) if a.reward > b.reward else (b, a)
            if (chosen.generation.pk, rejected.generation.pk) in seen:
                continue
            yield {
                **base,
                "id": f"p{chosen.generation.pk}>{rejected.generation.pk}",
                "prompt": _prompt(group, chosen),
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
                "margin": round(chosen.reward - rejected.reward, 6),
                "origin": "ranking",
            }


def ab_dpo_rows(group_ids: set[int]) -> list[tuple[Generation, Generation, float]]:
    """(chosen, rejected, margin) for every A/B pair both of whose completions lie in the selected
    groups and whose reviewers lean one way: the margin is the share of its choices for the
    chosen one minus those for the other. Pairs the reviewers split evenly make no row."""
    if not group_ids:
        return []
    rows = []
    # Chosen pairs are few (people chose on them): read them all, keep those in the selection.
    chosen_pairs = ABPair.objects.filter(choice_count__gt=0)
    ends = chosen_pairs.values_list("pk", "candidate__group_id", "baseline__group_id")
    inside = [pk for pk, a, b in ends if a in group_ids and b in group_ids]
    pairs = (
        ABPair.objects.filter(pk__in=inside)
        .select_related("candidate__group__character", "baseline__group__character")
        .order_by("pk")
    )
    votes: dict[int, list[float]] = {}
    for c in PairChoice.objects.filter(pair_id__in=inside, status=PairChoice.Status.SUBMITTED):
        votes.setdefault(c.pair_id, []).append(c.candidate_outcome)
    for p in pairs:
        outcomes = votes.get(p.pk)
        if not outcomes:
            continue
        lean = sum(outcomes) / len(outcomes) - 0.5  # above 0: toward the candidate
        if abs(lean) < 1e-9:
            continue
        chosen, rejected = (p.candidate, p.baseline) if lean > 0 else (p.baseline, p.candidate)
        rows.append((chosen, rejected, round(2 * abs(lean), 6)))
    return rows

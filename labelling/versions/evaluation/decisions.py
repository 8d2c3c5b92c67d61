"""What an evaluation decides: the verdict of a comparison (and the fewest prompts it needs), the
one rule that combines the judge's verdict with the reviewers' (blind A/B), and which prompts
an evaluation ran on (held out of the candidate's training, or not). The pages, the API and
the make-current check read them from here."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import ValidationError

from labelling.datasets.filters import DatasetFilter, groups_for
from labelling.models import Evaluation, GeneratorVersion, Prompt

# The rule, in one sentence: docs/loop.md states it, the evaluation page and the API show it.
RULE = (
    "The blind A/B verdict decides once reviewers have chosen on at least {n} prompts (people "
    "outrank the judge, as human scores outrank judge scores in rewards); until then the judge's "
    "verdict stands. Either needs at least {n} prompts, else it is undecided."
)


def min_prompts() -> int:
    """EVALUATION_MIN_PROMPTS: the fewest prompts a verdict rests on."""
    return settings.EVALUATION_MIN_PROMPTS


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict(result: dict | None) -> str | None:
    """better: the win rate's interval lies above 0.5; worse: below; undecided otherwise, and on
    fewer prompts than EVALUATION_MIN_PROMPTS whatever the interval; None without a comparison."""
    if not result or not result.get("prompts") or not result.get("win_rate"):
        return None
    if result["prompts"] < min_prompts():
        return "undecided"
    win = result["win_rate"]
    if win["low"] > 0.5:
        return "better"
    if win["high"] < 0.5:
        return "worse"
    return "undecided"


def verdict_reason(result: dict | None) -> str | None:
    """Why the verdict is what it is, in a line ("2 prompts; a verdict needs at least 6")."""
    if not result or not result.get("prompts") or not result.get("win_rate"):
        return None
    n, need = result["prompts"], min_prompts()
    if n < need:
        return f"{_plural(n, 'prompt')}; a verdict needs at least {need}"
    w = result["win_rate"]
    where = {"better": "lies above", "worse": "lies below"}.get(verdict(result), "includes")
    return f"the win rate's interval [{w['low']:.3f}, {w['high']:.3f}] {where} 0.5 over {_plural(n, 'prompt')}"


def _judged(result: dict | None) -> dict:
    if not result:
        return {"verdict": None, "reason": "no comparison yet: both sides must finish", "prompts": 0}
    return {"verdict": verdict(result), "reason": verdict_reason(result), "prompts": result.get("prompts", 0)}


def _chosen(human: dict | None) -> dict | None:
    if human is None:
        return None
    choices, prompts = human.get("choices", 0), human.get("prompts", 0)
    if not choices:
        return {"verdict": None, "reason": "no choices yet", "prompts": 0, "choices": 0}
    as_result = {"prompts": prompts, "win_rate": human.get("win_rate")}
    return {"verdict": verdict(as_result), "reason": verdict_reason(as_result), "prompts": prompts, "choices": choices}


def decision(result: dict | None, human: dict | None) -> dict:
    """The verdict that counts, by RULE: the reviewers' once they have chosen on enough prompts,
    else the judge's; with each side's own verdict and reason beside it."""
    need = min_prompts()
    judge, people = _judged(result), _chosen(human)
    if people is not None and people["prompts"] >= need:
        final, source = people["verdict"], "human"
        reason = f"reviewers decide (blind A/B on {_plural(people['prompts'], 'prompt')}): {people['reason']}"
        if judge["verdict"] and judge["verdict"] != final:
            reason += f"; the judge says {judge['verdict']}"
    else:
        final, source = judge["verdict"], "judge"
        if people is None:
            reason = f"the judge decides (no blind A/B): {judge['reason']}"
        else:
            reason = (
                f"the judge decides until reviewers have chosen on {need} prompts "
                f"(they have on {people['prompts']}): {judge['reason']}"
            )
    return {
        "verdict": final,
        "source": source,
        "reason": reason,
        "judge": judge,
        "human": people,
        "min_prompts": need,
        "rule": RULE.format(n=need),
    }


# --- the prompts an evaluation ran on ---------------------------------------------------------

LABELS = {
    "held_out": "held-out prompts",
    "training": "training prompts",
    "mixed": "partly training prompts",
    "unknown": "prompts of unknown use",
}


def _lineage_datasets(version: GeneratorVersion) -> list:
    """The dataset versions the version and every version it was trained from trained on."""
    found, seen = [], set()
    while version is not None and version.pk not in seen:
        seen.add(version.pk)
        if version.dataset_version_id:
            found.append(version.dataset_version)
        version = version.parent
    return found


def _key(messages) -> str:
    return json.dumps(messages, sort_keys=True)


def _trained(dataset_version, cache: dict) -> tuple[set[int], set[str]] | None:
    """The prompts a dataset version trains on (its filter's groups, held-out ones left out): ids
    and messages, so a copy of a prompt in another set counts too. None if its stored filter no
    longer reads (nothing can be said of its prompts)."""
    if dataset_version.pk not in cache:
        try:
            f = DatasetFilter.from_dict(dataset_version.filter or {})
        except ValidationError:
            cache[dataset_version.pk] = None
        else:
            rows = list(Prompt.objects.filter(groups__in=groups_for(f)).values_list("pk", "messages"))
            cache[dataset_version.pk] = ({pk for pk, _ in rows}, {_key(m) for _, m in rows})
    return cache[dataset_version.pk]


def prompt_set_use(evaluation: Evaluation, *, cache: dict | None = None) -> dict:
    """Whether the evaluation's prompts were held out of the candidate's training: `kind`
    held_out (none of them was trained on by the candidate or a version it was trained from),
    training (all were), mixed (some were) or unknown (no training data is recorded for it);
    `trained_on` of `prompts` prompts. A held-out prompt set's copies count as their originals."""
    cache = {} if cache is None else cache
    datasets = _lineage_datasets(evaluation.candidate)
    prompts = list(evaluation.prompt_set.prompts.values_list("pk", "messages", "metadata"))
    use = {"prompt_set": evaluation.prompt_set.slug, "prompts": len(prompts), "trained_on": None}
    trained_prompts = [_trained(dataset_version, cache) for dataset_version in datasets]
    if not datasets or None in trained_prompts:
        kind = "unknown"
    else:
        ids = set().union(*(found[0] for found in trained_prompts))
        texts = set().union(*(found[1] for found in trained_prompts))
        trained = 0
        for pk, messages, metadata in prompts:
            origin = (metadata or {}).get("held_out_from") if isinstance(metadata, dict) else None
            if pk in ids or (isinstance(origin, int) and origin in ids) or _key(messages) in texts:
                trained += 1
        use["trained_on"] = trained
        kind = "held_out" if trained == 0 else "training" if trained == len(prompts) else "mixed"
    use["kind"] = kind
    use["label"] = LABELS[kind]
    use["text"] = _use_text(use, evaluation.candidate)
    return use


def _use_text(use: dict, candidate: GeneratorVersion) -> str:
    if use["kind"] == "unknown":
        return f"{use['prompt_set']}: v{candidate.number}'s training data is not recorded here"
    if use["kind"] == "held_out":
        return f"{use['prompt_set']}: none of its {_plural(use['prompts'], 'prompt')} was trained on"
    return f"{use['prompt_set']}: {use['trained_on']} of {_plural(use['prompts'], 'prompt')} trained on"

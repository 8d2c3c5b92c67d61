"""Explorer reads: completions with their scores, filtered and sorted in SQL and paged by key
(never by offset), so a page costs the same on the first and the thousandth page; the few
rows of a page then get their criterion scores, reviewers and group advantages in a fixed
number of queries. The reward follows the dataset policy (labelling.datasets.rewards): the
mean of the human judgments when there are any, else the judge's latest successful one."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Avg, Exists, F, FloatField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Abs, Coalesce

from labelling.datasets import storage
from labelling.datasets.filters import DatasetFilter, groups_for, rubric_for
from labelling.datasets.rewards import EPS
from labelling.models import CriterionScore, DatasetVersion, Generation, Group, Judgment, PipelineRun, Rubric

PAGE_SIZE = 50
SORTS = {
    "": "oldest first",
    "reward": "reward, highest first",
    "-reward": "reward, lowest first",
    "disagreement": "judge–human disagreement, largest first",
}
FAILURES = {
    "": "any",
    "judge": "the judge's answer did not parse",
    "think": "think tags invalid",
    "length": "cut at the token limit",
    "unscored": "no reward",
}


@dataclass(frozen=True)
class Query:
    """What an explorer page asks for, read from its query string (bad values are ignored)."""

    sort: str = ""
    failure: str = ""
    reviewer: int | None = None
    human: str = ""  # "yes": reviewed by a human; "no": not yet
    after: str = ""  # the last row of the previous page: "<value>:<id>" or "<id>"

    @classmethod
    def from_params(cls, params) -> Query:
        reviewer = params.get("reviewer", "")
        return cls(
            sort=params.get("sort", "") if params.get("sort", "") in SORTS else "",
            failure=params.get("failure", "") if params.get("failure", "") in FAILURES else "",
            reviewer=int(reviewer) if reviewer.isascii() and reviewer.isdigit() and len(reviewer) < 18 else None,
            human=params.get("human", "") if params.get("human", "") in ("yes", "no") else "",
            after=params.get("after", "")[:80],
        )

    def params(self, **changes) -> dict:
        values = {**self.__dict__, **changes}
        return {k: v for k, v in values.items() if v not in ("", None)}


@dataclass
class Row:
    generation: Generation
    prompt_text: str
    judge: Judgment | None = None
    judge_failed: Judgment | None = None
    humans: list[Judgment] = field(default_factory=list)
    reward: float | None = None
    human_mean: float | None = None
    advantage: float | None = None

    @property
    def disagreement(self) -> float | None:
        if self.human_mean is None or self.judge is None or self.judge.overall is None:
            return None
        return abs(self.human_mean - self.judge.overall)


def prompt_text(messages) -> str:
    """What a prompt asks: its last non-system message (the question a group answers)."""
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") != "system":
            return str(message.get("content", ""))
    return ""


# --- scopes: which completions a page lists ---------------------------------------------------


def run_scope(run: PipelineRun) -> tuple[QuerySet[Generation], Rubric | None]:
    """A run's completions: the ones it made; for a judge run, the ones it judged (its source
    run's). Scores are read against the run's rubric when it has one."""
    made_by = run.source_run_id if run.kind == PipelineRun.Kind.JUDGE and run.source_run_id else run.pk
    return Generation.objects.filter(run_id=made_by), run.rubric


def dataset_scope(version: DatasetVersion) -> tuple[QuerySet[Generation], Rubric | None]:
    """The completions of the groups a version's filter selects (as they are now: the frozen
    rows are in its file), against the rubric it names."""
    f = DatasetFilter.from_dict(version.filter or {})
    return Generation.objects.filter(group_id__in=groups_for(f).values("id")), rubric_for(f)


# --- the page -----------------------------------------------------------------------------------


def _of_rubric(judgments: QuerySet[Judgment], rubric: Rubric | None) -> QuerySet[Judgment]:
    """Judgments against the rubric, compared as `rubric_id + 0`: a plain comparison lets the
    planner walk the (rubric, source, status) index, every judgment of the rubric for each
    completion, instead of the completion's own few (the generation index)."""
    if rubric is None:
        return judgments
    return judgments.alias(rubric_key=F("rubric_id") + 0).filter(rubric_key=rubric.pk)


def _scored(generations: QuerySet[Generation], rubric: Rubric | None) -> QuerySet[Generation]:
    """Each completion with its judge score (latest successful), human mean and reward, as SQL."""
    judgments = _of_rubric(Judgment.objects.filter(generation=OuterRef("pk"), status=Judgment.Status.OK), rubric)
    judge = judgments.filter(source=Judgment.Source.JUDGE).order_by("-id").values("overall")[:1]
    human = (
        judgments.filter(source=Judgment.Source.HUMAN)
        .order_by()
        .values("generation")
        .annotate(mean=Avg("overall"))
        .values("mean")
    )
    return generations.annotate(
        judge_score=Subquery(judge, output_field=FloatField()),
        human_score=Subquery(human, output_field=FloatField()),
    ).annotate(reward_value=Coalesce(F("human_score"), F("judge_score")))


def _filtered(generations: QuerySet[Generation], query: Query, rubric: Rubric | None) -> QuerySet[Generation]:
    mine = _of_rubric(Judgment.objects.filter(generation=OuterRef("pk")), rubric)
    if query.failure == "judge":
        failed = mine.filter(source=Judgment.Source.JUDGE, status=Judgment.Status.FAILED)
        ok = mine.filter(source=Judgment.Source.JUDGE, status=Judgment.Status.OK)
        generations = generations.filter(Exists(failed), ~Exists(ok))
    elif query.failure == "think":
        generations = generations.filter(think_valid=False)
    elif query.failure == "length":
        generations = generations.filter(finish_reason="length")
    elif query.failure == "unscored":
        generations = generations.filter(reward_value__isnull=True)
    if query.reviewer is not None:
        generations = generations.filter(Exists(mine.filter(source=Judgment.Source.HUMAN, reviewer_id=query.reviewer)))
    if query.human == "yes":
        generations = generations.filter(human_score__isnull=False)
    elif query.human == "no":
        generations = generations.filter(human_score__isnull=True)
    return generations


def _cursor(query: Query) -> tuple[float | None, int] | None:
    value, _, pk = query.after.rpartition(":")
    try:
        return (float(value) if value else None), int(pk)
    except ValueError:
        return None


def _ordered(generations: QuerySet[Generation], query: Query) -> tuple[QuerySet[Generation], str | None]:
    """The sort, and the rows after the cursor: keyset paging on (value, id)."""
    cursor = _cursor(query)
    key = None
    if query.sort in ("reward", "-reward"):
        key = "reward_value"
    elif query.sort == "disagreement":
        generations = generations.annotate(gap=Abs(F("human_score") - F("judge_score")))
        key = "gap"
    if key is None:
        if cursor is not None:
            generations = generations.filter(pk__gt=cursor[1])
        return generations.order_by("pk"), None
    generations = generations.filter(**{f"{key}__isnull": False})  # a sort lists the rows that have the value
    descending = query.sort != "-reward"
    if cursor is not None and cursor[0] is not None and math.isfinite(cursor[0]):
        value, pk = cursor
        beyond = Q(**{f"{key}__lt" if descending else f"{key}__gt": value})
        generations = generations.filter(beyond | Q(**{key: value}, pk__gt=pk))
    return generations.order_by(f"-{key}" if descending else key, "pk"), key


def explore(generations: QuerySet[Generation], rubric: Rubric | None, query: Query) -> dict:
    """One page: its rows (scores, reward, advantage), and the cursor of the next page (None
    on the last)."""
    scored = _filtered(_scored(generations, rubric), query, rubric)
    ordered, key = _ordered(scored, query)
    found = list(ordered.values_list("pk", *([key] if key else []))[: PAGE_SIZE + 1])
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    rows = page_rows([item[0] for item in found], rubric)
    after = None
    if more:
        last = found[-1]
        after = f"{last[1]!r}:{last[0]}" if key else str(last[0])
    return {"rows": rows, "after": after}


def page_rows(ids: list[int], rubric: Rubric | None) -> list[Row]:
    """The page's completions, in `ids` order, with their judgments and advantages (a fixed
    number of queries whatever the page holds)."""
    judgments = Judgment.objects.select_related("reviewer").prefetch_related(
        Prefetch("scores", queryset=CriterionScore.objects.select_related("criterion").order_by("criterion__order"))
    )
    judgments = _of_rubric(judgments, rubric)
    generations = {
        g.pk: g
        for g in Generation.objects.filter(pk__in=ids)
        .select_related("group__prompt")
        .prefetch_related(Prefetch("judgments", queryset=judgments.order_by("id")))
    }
    rows = [_row(generations[pk]) for pk in ids if pk in generations]
    _advantages(rows, rubric)
    return rows


def _row(generation: Generation) -> Row:
    row = Row(generation, prompt_text(generation.group.prompt.messages))
    for judgment in generation.judgments.all():  # in id order: the last judge answer wins
        if judgment.source == Judgment.Source.HUMAN:
            if judgment.status == Judgment.Status.OK:
                row.humans.append(judgment)
        elif judgment.status == Judgment.Status.OK:
            row.judge = judgment
        else:
            row.judge_failed = judgment
    if row.humans:
        row.human_mean = round(sum(j.overall for j in row.humans) / len(row.humans), 6)
    row.reward = row.human_mean if row.human_mean is not None else (row.judge.overall if row.judge else None)
    return row


def _advantages(rows: list[Row], rubric: Rubric | None) -> None:
    """(r - mean) / (std + eps) within each row's group, over the group's original completions."""
    groups = {r.generation.group_id for r in rows if r.generation.revision == 0}
    if not groups:
        return
    rewards: dict[int, list[float]] = defaultdict(list)
    originals = _scored(Generation.objects.filter(group_id__in=groups, revision=0), rubric)
    for group_id, reward in originals.values_list("group_id", "reward_value"):
        if reward is not None:
            rewards[group_id].append(reward)
    for row in rows:
        values = rewards.get(row.generation.group_id)
        if row.reward is None or row.generation.revision != 0 or not values:
            continue
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        row.advantage = round((row.reward - mean) / (std + EPS), 6)


def reviewers_of(generations: QuerySet[Generation]) -> list[tuple[int, str]]:
    """Who reviewed any of these completions: the reviewer filter's choices."""
    found = (
        Judgment.objects.filter(source=Judgment.Source.HUMAN, generation__in=generations)
        .order_by()
        .values_list("reviewer_id", "reviewer__username")
        .distinct()
    )
    return sorted(found, key=lambda pair: pair[1])


# --- a group --------------------------------------------------------------------------------------


def group_rows(group: Group, rubric: Rubric | None) -> list[Row]:
    """Every completion of the group (revisions after their originals) with its scores."""
    ids = list(group.generations.order_by("index", "revision").values_list("pk", flat=True))
    return page_rows(ids, rubric)


def group_cards(groups: list[Group], rubric: Rubric | None) -> dict[int, list[Row]]:
    """The run page's groups: each group's completions with their scores, in slot order."""
    ids = list(
        Generation.objects.filter(group__in=groups)
        .order_by("group_id", "index", "revision")
        .values_list("pk", flat=True)
    )
    cards: dict[int, list[Row]] = defaultdict(list)
    for row in page_rows(ids, rubric):
        cards[row.generation.group_id].append(row)
    return cards


# --- a frozen version's file ------------------------------------------------------------------------


def dataset_file_page(version: DatasetVersion, *, offset: int = 0, size: int = PAGE_SIZE) -> dict:
    """`size` rows of the version's file from byte `offset` (the cursor: a line's start), read
    after checking the file against its sha256, each row flattened for a table; and the next
    page's offset (None at the end)."""
    storage.dataset_verify(version)
    rows = []
    with open(storage.dataset_path(version), "rb") as f:
        if offset > 0:  # a cursor inside a line (edited by hand) moves on to the next line
            f.seek(offset - 1)
            if f.read(1) != b"\n":
                f.readline()
        while len(rows) < size:
            line = f.readline()
            if not line:
                return {"rows": rows, "after": None}
            rows.extend(_file_rows(json.loads(line)))
        at = f.tell()
        return {"rows": rows, "after": at if f.readline() else None}


def _file_rows(row: dict) -> list[dict]:
    """One file row as table rows: a GRPO row is one per completion."""
    asked = row.get("prompt") or [m for m in row.get("messages") or [] if m.get("role") != "assistant"]
    prompt = prompt_text(asked)
    base = {"id": row.get("id"), "group_id": row.get("group_id"), "prompt": prompt}
    if "completions" in row:
        return [
            {
                **base,
                "completion": _text(completion),
                "reward": (row.get("rewards") or [None] * (i + 1))[i],
                "advantage": (row.get("advantages") or [None] * (i + 1))[i],
                "scores": (row.get("scores") or [{}] * (i + 1))[i],
                "source": (row.get("reward_sources") or [None] * (i + 1))[i],
            }
            for i, completion in enumerate(row["completions"])
        ]
    if "chosen" in row:
        return [{**base, "completion": _text(row["chosen"]), "rejected": _text(row.get("rejected"))}]
    if "completion" in row:
        return [
            {**base, "completion": _text(row["completion"]), "reward": row.get("reward"), "label": row.get("label")}
        ]
    if "messages" in row:
        return [{**base, "completion": _text([m for m in row["messages"] if m.get("role") == "assistant"])}]
    return [base]


def _text(messages) -> str:
    if isinstance(messages, str):
        return messages
    return "\n".join(str(m.get("content", "")) for m in messages or [] if isinstance(m, dict))

"""Import characters, rubrics, prompt sets and completion groups from JSONL, YAML or JSON.

An import is all or nothing: every record is validated first (shape, references,
slugs already taken), every problem is reported with file, line and field, and
only a clean file is written, in one transaction.

Formats
- YAML / JSON: a mapping with any of the lists `characters`, `rubrics`,
  `prompt_sets` (each may hold `prompts`), `prompts` (each with `prompt_set`),
  `groups`.
- JSONL: one object per line with `kind`: character | rubric | prompt_set |
  prompt | group. A `prompt` line names its `prompt_set`. With a default prompt
  set (`--prompt-set`), lines without `kind` are prompts of that set: a plain
  `{"messages": [...]}` file imports as is.

One module (over 400 lines) because it is one all-or-nothing pipeline in three stages,
marked below: reading (records with their file lines), validating (shapes, references,
slugs), writing (one transaction); the stages pass the same records and problems along.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.db import transaction
from pydantic import BaseModel, ValidationError

from labelling import errors
from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, GroupIn, PromptIn, PromptSetIn, RubricIn
from labelling.models import Character, Generation, Group, Judgment, PipelineRun, Prompt, PromptSet
from labelling.records import services as record_services
from shaping_core import strict

KINDS: dict[str, type[BaseModel]] = {
    "character": CharacterIn,
    "rubric": RubricIn,
    "prompt_set": PromptSetIn,
    "prompt": PromptIn,
    "group": GroupIn,
}
SECTIONS = {
    "characters": "character",
    "rubrics": "rubric",
    "prompt_sets": "prompt_set",
    "prompts": "prompt",
    "groups": "group",
}
MAX_REPORTED = 50


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ImportFailed(Exception):
    """The file was not imported; nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        super().__init__(f"{len(problems)} problem(s), nothing imported:\n{shown}{more}")


@dataclass
class Record:
    kind: str
    data: BaseModel
    line: int
    extra: dict = field(default_factory=dict)  # e.g. the prompt set a prompt line belongs to


@dataclass
class ImportSummary:
    characters: int = 0
    rubrics: int = 0
    prompt_sets: int = 0
    prompts: int = 0
    groups: int = 0
    run_id: int | None = None

    def __str__(self) -> str:
        parts = [f"{n} {name.replace('_', ' ')}" for name, n in vars(self).items() if name != "run_id" and n]
        return "imported " + (", ".join(parts) if parts else "nothing")


# --- reading ----------------------------------------------------------------------


@dataclass
class _Raw:
    kind: str | None
    value: Any
    line: int
    locate: Any  # callable(loc tuple) -> line, for field-level line numbers
    prefix: str
    extra: dict = field(default_factory=dict)


def _read(name: str, text: str, default_prompt_set: str | None) -> Iterator[_Raw | Problem]:
    suffix = Path(name).suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(name, text, default_prompt_set)
    elif suffix in {".yaml", ".yml", ".json"}:
        yield from _read_document(name, text)
    else:
        yield Problem(
            name,
            None,
            "",
            f"unknown file type {suffix or '(none)'}: use .jsonl, .yaml, .yml or .json",
        )


def jsonl_values(name: str, text: str) -> Iterator[tuple[int, object] | Problem]:
    """(line number, parsed value) for each non-blank line, or a Problem for one that is not JSON."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = strict.json_loads(line)
        except json.JSONDecodeError as exc:
            yield Problem(name, number, "", f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except strict.NotStrictJson as exc:  # NaN, an infinity, nesting past strict.MAX_DEPTH
            yield Problem(name, number, "", f"invalid JSON: {exc}")
            continue
        if (where := errors.nul_path(value)) is not None:  # a "\u0000" escape: no database row takes it
            yield Problem(name, number, _field("", where), errors.NUL_REFUSED)
            continue
        yield number, value


def _read_jsonl(name: str, text: str, default_prompt_set: str | None) -> Iterator[_Raw | Problem]:
    for row in jsonl_values(name, text):
        if isinstance(row, Problem):
            yield row
            continue
        number, value = row
        if not isinstance(value, dict):
            yield Problem(name, number, "", f"expected a JSON object, got {type(value).__name__}")
            continue
        kind = value.pop("kind", None)
        extra = {}
        if kind is None and default_prompt_set:
            kind = "prompt"
        if kind == "prompt":
            prompt_set = value.pop("prompt_set", None) or default_prompt_set
            if not prompt_set:
                yield Problem(
                    name,
                    number,
                    "prompt_set",
                    "a prompt line needs prompt_set (or pass a default prompt set)",
                )
                continue
            extra["prompt_set"] = prompt_set
        yield _Raw(kind, value, number, lambda loc, n=number: n, "", extra)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that also hands back the node tree, for line numbers, and refuses anchors and
    aliases (`&a` / `*a`): even a safe loader expands them, and a few lines of nested aliases
    expand to gigabytes. No import format needs them."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "aliases (*name)" if isinstance(event, yaml.AliasEvent) else "anchors (&name)"
            raise yaml.composer.ComposerError(None, None, f"{kind} are not accepted in imports", event.start_mark)
        return super().compose_node(parent, index)


def _read_document(name: str, text: str) -> Iterator[_Raw | Problem]:
    try:
        root = yaml.compose(text, Loader=_LineLoader)
        value = strict.checked(yaml.load(text, Loader=_LineLoader))  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        yield Problem(name, line, "", f"invalid YAML/JSON: {getattr(exc, 'problem', None) or exc}")
        return
    except RecursionError:
        yield Problem(name, None, "", f"invalid YAML/JSON: nested deeper than {strict.MAX_DEPTH} levels")
        return
    except strict.NotStrictJson as exc:  # .nan, .inf, nesting past strict.MAX_DEPTH
        yield Problem(name, None, "", f"invalid YAML/JSON: {exc}")
        return
    if not isinstance(value, dict):
        yield Problem(
            name,
            1,
            "",
            "expected a mapping with characters / rubrics / prompt_sets / prompts / groups",
        )
        return
    if (where := errors.nul_path(value)) is not None:  # "\0" or "\u0000" in a quoted string
        yield Problem(name, _locate(root, where), _field("", where), errors.NUL_REFUSED)
        return
    for key in value:
        if key not in SECTIONS:
            yield Problem(
                name,
                _locate(root, (key,)),
                key,
                f"unknown section; expected one of {', '.join(SECTIONS)}",
            )
    for section, kind in SECTIONS.items():
        items = value.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            yield Problem(name, _locate(root, (section,)), section, "expected a list")
            continue
        for i, item in enumerate(items):
            line = _locate(root, (section, i))
            if not isinstance(item, dict):
                yield Problem(name, line, f"{section}[{i}]", "expected a mapping")
                continue
            extra = {}
            if kind == "prompt":
                item = dict(item)
                prompt_set = item.pop("prompt_set", None)
                if not prompt_set:
                    yield Problem(name, line, f"{section}[{i}].prompt_set", "field required")
                    continue
                extra["prompt_set"] = prompt_set
            yield _Raw(
                kind,
                item,
                line,
                lambda loc, s=section, i=i: _locate(root, (s, i, *loc)),
                f"{section}[{i}]",
                extra,
            )


def _locate(node: Any, path: tuple) -> int | None:
    """The line of the node at `path` (keys and indexes), or of its nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _field(prefix: str, loc: tuple) -> str:
    path = prefix
    for step in loc:
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else str(step))
    return path


# --- validating -------------------------------------------------------------------


def parse_file(name: str, text: str, *, default_prompt_set: str | None = None) -> list[Record]:
    """Validate every record of a file; raise ImportFailed listing all problems."""
    return _validate(name, _read(name, text, default_prompt_set))


def _validate(name: str, raws: Iterable[_Raw | Problem]) -> list[Record]:
    problems: list[Problem] = []
    records: list[Record] = []
    for raw in raws:
        if isinstance(raw, Problem):
            problems.append(raw)
            continue
        schema = KINDS.get(raw.kind or "")
        if schema is None:
            problems.append(
                Problem(
                    name,
                    raw.line,
                    _field(raw.prefix, ("kind",)),
                    f"unknown kind {raw.kind!r}; expected one of {', '.join(KINDS)}",
                )
            )
            continue
        try:
            data = schema.model_validate(raw.value)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                problems.append(Problem(name, raw.locate(loc), _field(raw.prefix, loc), _message(err)))
            continue
        records.append(Record(raw.kind, data, raw.line, raw.extra))
    problems.extend(_check_references(name, records))
    if problems:
        raise ImportFailed(problems)
    return records


def _message(err: dict) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "field required"
    return msg


def _check_references(name: str, records: list[Record]) -> Iterator[Problem]:
    """Slugs must be new (characters, prompt sets) and references must resolve."""
    seen: dict[str, dict[str, int]] = {"character": {}, "rubric": {}, "prompt_set": {}}
    prompt_ids: dict[str, set[str]] = {}
    for r in records:
        if r.kind in seen:
            slug = r.data.slug
            if slug in seen[r.kind]:
                yield Problem(
                    name,
                    r.line,
                    "slug",
                    f"duplicate {r.kind} slug {slug!r} (first on line {seen[r.kind][slug]})",
                )
            seen[r.kind][slug] = r.line
        if r.kind == "character" and Character.objects.filter(slug=r.data.slug).exists():
            yield Problem(name, r.line, "slug", f"a character with slug {r.data.slug!r} already exists")
        if r.kind == "prompt_set":
            if PromptSet.objects.filter(slug=r.data.slug).exists():
                yield Problem(name, r.line, "slug", f"a prompt set with slug {r.data.slug!r} already exists")
            ids = prompt_ids.setdefault(r.data.slug, set())
            for i, p in enumerate(r.data.prompts):
                pid = p.id or str(i + 1)
                if pid in ids:
                    yield Problem(name, r.line, f"prompts[{i}].id", f"duplicate prompt id {pid!r}")
                ids.add(pid)
        if r.kind == "rubric":
            latest = catalogue_selectors.rubric_latest(r.data.slug)
            if latest is not None and catalogue_services.rubric_spec_matches(latest, r.data):
                yield Problem(name, r.line, "slug", f"rubric {latest.label} already has exactly this content")
    grouped: dict[tuple[str, str], int] = {}  # (prompt set, prompt) -> the line of its group
    for r in records:
        if r.kind == "prompt":
            slug = r.extra["prompt_set"]
            if slug not in seen["prompt_set"] and not PromptSet.objects.filter(slug=slug).exists():
                yield Problem(
                    name,
                    r.line,
                    "prompt_set",
                    f"no prompt set {slug!r} in this file or the database",
                )
            elif r.data.id:
                ids = prompt_ids.setdefault(slug, set(_existing_prompt_ids(slug)))
                if r.data.id in ids:
                    yield Problem(name, r.line, "id", f"prompt id {r.data.id!r} already exists in {slug!r}")
                ids.add(r.data.id)
        elif r.kind == "group":
            g: GroupIn = r.data
            if g.character not in seen["character"] and not Character.objects.filter(slug=g.character).exists():
                yield Problem(name, r.line, "character", f"no character {g.character!r}")
            known = prompt_ids.get(g.prompt_set) or set(_existing_prompt_ids(g.prompt_set))
            if g.prompt_set not in seen["prompt_set"] and not PromptSet.objects.filter(slug=g.prompt_set).exists():
                yield Problem(name, r.line, "prompt_set", f"no prompt set {g.prompt_set!r}")
            elif g.prompt not in known:
                yield Problem(name, r.line, "prompt", f"no prompt {g.prompt!r} in prompt set {g.prompt_set!r}")
            elif (g.prompt_set, g.prompt) in grouped:
                yield Problem(
                    name,
                    r.line,
                    "prompt",
                    f"a second group for prompt {g.prompt!r} (the first is on line {grouped[g.prompt_set, g.prompt]}): "
                    "a file's groups become one run, with one group per prompt; put it in another file",
                )
            grouped.setdefault((g.prompt_set, g.prompt), r.line)
            if g.rubric:
                yield from _check_group_scores(name, r, seen["rubric"], records)


def _existing_prompt_ids(slug: str) -> list[str]:
    return list(Prompt.objects.filter(prompt_set__slug=slug).values_list("external_id", flat=True))


def _check_group_scores(name: str, r: Record, rubrics_in_file: dict, records: list[Record]) -> Iterator[Problem]:
    g: GroupIn = r.data
    spec = next((x.data for x in records if x.kind == "rubric" and x.data.slug == g.rubric), None)
    if spec is None:
        latest = catalogue_selectors.rubric_latest(g.rubric)
        if latest is None:
            yield Problem(name, r.line, "rubric", f"no rubric {g.rubric!r}")
            return
        criteria = list(latest.criteria.all())
    else:
        criteria = spec.criteria
    # Rule criteria are scored by their rules on import: a score for one may be left out (or is replaced).
    scored_by_judge = [(c.key, c.scale_min, c.scale_max) for c in criteria if c.rule is None]
    keys, rule_keys = {k for k, _, _ in scored_by_judge}, {c.key for c in criteria if c.rule is not None}
    for i, scored in enumerate(g.judge_scores or []):
        if not keys <= set(scored.scores) <= keys | rule_keys:
            may = f" (the rule criteria {sorted(rule_keys)} may be left out)" if rule_keys else ""
            yield Problem(name, r.line, f"judge_scores[{i}].scores", f"must score exactly {sorted(keys)}{may}")
            continue
        for key, lo, hi in scored_by_judge:
            if not lo <= scored.scores[key] <= hi:
                yield Problem(
                    name,
                    r.line,
                    f"judge_scores[{i}].scores.{key}",
                    f"{scored.scores[key]} is outside {lo}..{hi}",
                )


# --- writing ----------------------------------------------------------------------


@transaction.atomic
def apply(records: list[Record], *, source: str) -> ImportSummary:
    summary = ImportSummary()
    order = ["character", "rubric", "prompt_set", "prompt", "group"]
    by_kind = {k: [r for r in records if r.kind == k] for k in order}
    for r in by_kind["character"]:
        catalogue_services.character_create(data=r.data)
        summary.characters += 1
    for r in by_kind["rubric"]:
        latest = catalogue_selectors.rubric_latest(r.data.slug)
        if latest is None:
            catalogue_services.rubric_create(data=r.data)
        else:
            catalogue_services.rubric_update(rubric=latest, data=r.data)
        summary.rubrics += 1
    for r in by_kind["prompt_set"]:
        catalogue_services.prompt_set_create(data=r.data)
        summary.prompt_sets += 1
        summary.prompts += len(r.data.prompts)
    for r in by_kind["prompt"]:
        catalogue_services.prompts_add(prompt_set=PromptSet.objects.get(slug=r.extra["prompt_set"]), prompts=[r.data])
        summary.prompts += 1
    if by_kind["group"]:
        run = PipelineRun.objects.create(
            kind=PipelineRun.Kind.IMPORT,
            status=PipelineRun.Status.SUCCEEDED,
            params={"source": source},
            total_items=len(by_kind["group"]),
            done_items=len(by_kind["group"]),
            group_size=max(len(r.data.completions) for r in by_kind["group"]),
        )
        for r in by_kind["group"]:
            group_import(data=r.data, run=run)
            summary.groups += 1
        summary.run_id = run.pk
    return summary


def import_objects(name: str, kind: str, values: list[dict]) -> ImportSummary:
    """Records given as objects (an API body's list) rather than a file's lines: validated
    and written exactly like a file, all or nothing; problems name `name[i].field`."""
    raws = (
        _Raw(kind, dict(v) if isinstance(v, dict) else v, i + 1, lambda loc: None, f"{name}[{i}]")
        for i, v in enumerate(values)
    )
    try:
        records = _validate(name, raws)
    except ImportFailed as exc:  # name the object, not a line: `groups[1].prompt`
        raise ImportFailed(
            [
                p
                if p.line is None
                else Problem(name, None, _field(f"{name}[{p.line - 1}]", (p.field,) if p.field else ()), p.message)
                for p in exc.problems
            ]
        ) from None
    return apply(records, source=name)


def import_size_check(name: str, size: int) -> None:
    """An import file is at most settings.IMPORT_MAX_BYTES (a form checks before reading it)."""
    if size > settings.IMPORT_MAX_BYTES:
        raise ImportFailed(
            [
                Problem(
                    name,
                    None,
                    "",
                    f"the file is {size} bytes; an import is at most {settings.IMPORT_MAX_BYTES} bytes "
                    "(IMPORT_MAX_BYTES): split it into several files",
                )
            ]
        )


def import_text(name: str, text: str, *, default_prompt_set: str | None = None) -> ImportSummary:
    import_size_check(name, len(text.encode("utf-8")))
    records = parse_file(name, text, default_prompt_set=default_prompt_set)
    return apply(records, source=name)


def import_path(path: Path, *, default_prompt_set: str | None = None) -> ImportSummary:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed([Problem(str(path), None, "", f"cannot read: {exc}")]) from exc
    return import_text(str(path), text, default_prompt_set=default_prompt_set)


def group_import(*, data: GroupIn, run: PipelineRun) -> Group:
    """Completions made elsewhere become a GRPO group for review (and, with
    judge_scores, judged rows as if our judge had scored them)."""
    character = Character.objects.get(slug=data.character)
    prompt = Prompt.objects.get(prompt_set__slug=data.prompt_set, external_id=data.prompt)
    producer = record_services.producer_get_or_create(backend="external", model_name=data.model)
    group = Group.objects.create(run=run, prompt=prompt, character=character, size=len(data.completions))
    messages = catalogue_selectors.prompt_messages_for(character, prompt)
    rubric = catalogue_selectors.rubric_latest(data.rubric) if data.rubric else None
    for index, raw in enumerate(data.completions):
        generation = record_services.generation_record(
            group=group,
            index=index,
            messages=messages,
            raw_text=raw,
            producer=producer,
            source=Generation.Source.EXTERNAL,
            run=run,
        )
        if data.judge_scores is not None:
            scored = data.judge_scores[index]
            record_services.judgment_record(
                generation=generation,
                rubric=rubric,
                source=Judgment.Source.JUDGE,
                scores=scored.scores,
                rationale=scored.rationale,
                producer=producer,
                run=run,
            )
    return group

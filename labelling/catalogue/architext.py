"""Architext decision puzzles: floor-plan rows turned into decision prompts for a character.

A row is the Architext format: a layout prompt and its room layout, either as one string
`"[prompt] ... [layout] room: (x,y)(x,y)..., room: ..."` under `text`, or as the two
fields `prompt` and `layout`. Each room is a polygon of at least three integer points
(0..256). docs/puzzles.md describes the format; labelling/demo/architext-sample.jsonl is
a small sample.

Synthesis is deterministic: rooms, their sizes and which ones touch become a scene, and
the prompt asks the character where to go, what to choose and why, reasoning in <think>
first. The result is a prompt set that runs through generate, judge and review like any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction

from labelling.catalogue import services as catalogue_services
from labelling.catalogue.importers import ImportFailed, Problem, import_size_check, jsonl_values
from labelling.catalogue.schemas import PromptIn, PromptSetIn
from labelling.models import PromptSet

ROOM = re.compile(r"\s*([a-z][a-z_]*\d*)\s*:\s*((?:\(\s*-?\d+\s*,\s*-?\d+\s*\)\s*)+)\s*(?:,|$)")
POINT = re.compile(r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)")
MAX_COORD = 256


@dataclass(frozen=True)
class Room:
    name: str
    points: tuple[tuple[int, int], ...]

    @property
    def box(self) -> tuple[int, int, int, int]:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def area(self) -> int:
        """Shoelace formula, in grid units."""
        pts = self.points
        return abs(sum(pts[i][0] * pts[i - 1][1] - pts[i - 1][0] * pts[i][1] for i in range(len(pts)))) // 2

    @property
    def label(self) -> str:
        return re.sub(r"\d+$", lambda m: f" {m.group()}", self.name).replace("_", " ")


@dataclass(frozen=True)
class Puzzle:
    id: str
    prompt: str
    rooms: tuple[Room, ...]


def parse_layout(layout: str) -> tuple[Room, ...]:
    """Rooms of a layout string; ValueError naming what does not parse."""
    rooms, pos, text = [], 0, layout.strip()
    while pos < len(text):
        match = ROOM.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read a room at character {pos + 1}: {text[pos : pos + 30]!r}")
        points = tuple((int(x), int(y)) for x, y in POINT.findall(match.group(2)))
        name = match.group(1)
        if len(points) < 3:
            raise ValueError(f"room {name!r} has {len(points)} points; a room needs at least 3")
        if any(not 0 <= c <= MAX_COORD for p in points for c in p):
            raise ValueError(f"room {name!r} has a point outside 0..{MAX_COORD}")
        if any(r.name == name for r in rooms):
            raise ValueError(f"room {name!r} appears twice")
        rooms.append(Room(name, points))
        pos = match.end()
    if not rooms:
        raise ValueError("the layout has no rooms")
    return tuple(rooms)


def parse_row(value: object, line: int, name: str) -> tuple[Puzzle | None, list[Problem]]:
    if not isinstance(value, dict):
        return None, [Problem(name, line, "", "expected a JSON object")]
    unknown = set(value) - {"id", "text", "prompt", "layout"}
    if unknown:
        return None, [Problem(name, line, sorted(unknown)[0], "unknown field")]
    if "text" in value:
        text = value["text"]
        if not isinstance(text, str) or "[prompt]" not in text or "[layout]" not in text:
            return None, [Problem(name, line, "text", 'expected "[prompt] ... [layout] ..."')]
        prompt, layout = text.split("[layout]", 1)
        prompt = prompt.replace("[prompt]", "", 1)
    else:
        prompt, layout = value.get("prompt"), value.get("layout")
        for field, v in (("prompt", prompt), ("layout", layout)):
            if not isinstance(v, str) or not v.strip():
                return None, [Problem(name, line, field, "field required (a non-empty string)")]
    if not prompt.strip():
        return None, [Problem(name, line, "prompt", "the layout prompt is empty")]
    puzzle_id = value.get("id", str(line))
    if not isinstance(puzzle_id, str | int) or not str(puzzle_id).strip() or len(str(puzzle_id)) > 120:
        return None, [Problem(name, line, "id", "must be a non-empty string of at most 120 characters")]
    try:
        rooms = parse_layout(layout)
    except ValueError as exc:
        return None, [Problem(name, line, "layout", str(exc))]
    return Puzzle(str(puzzle_id), prompt.strip(), rooms), []


def parse_puzzles(name: str, text: str) -> list[Puzzle]:
    """Every row checked first; ImportFailed lists all problems (nothing is written)."""
    puzzles, problems, seen = [], [], {}
    for row in jsonl_values(name, text):
        if isinstance(row, Problem):
            problems.append(row)
            continue
        line, value = row
        puzzle, found = parse_row(value, line, name)
        problems += found
        if puzzle is not None:
            if puzzle.id in seen:
                problems.append(
                    Problem(name, line, "id", f"duplicate id {puzzle.id!r} (first on line {seen[puzzle.id]})")
                )
            seen[puzzle.id] = line
            puzzles.append(puzzle)
    if not puzzles and not problems:
        problems.append(Problem(name, None, "", "no puzzle rows"))
    if problems:
        raise ImportFailed(problems)
    return puzzles


def _touch(a: Room, b: Room) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    overlap_x = min(ax1, bx1) - max(ax0, bx0)
    overlap_y = min(ay1, by1) - max(ay0, by0)
    return (overlap_x >= 0 and overlap_y > 0) or (overlap_y >= 0 and overlap_x > 0)


def decision_prompt(puzzle: Puzzle) -> str:
    """The scene and the decision, from the layout alone (deterministic)."""
    rooms = sorted(puzzle.rooms, key=lambda r: (-r.area, r.name))
    lines = [f"- the {r.label} ({r.area} square units)" for r in rooms]
    links = sorted(
        {
            " and the ".join(sorted((a.label, b.label)))
            for a in puzzle.rooms
            for b in puzzle.rooms
            if a.name < b.name and _touch(a, b)
        }
    )
    biggest, smallest = rooms[0], rooms[-1]
    return "\n".join(
        [
            f'You have just arrived at a home described as: "{puzzle.prompt}".',
            "Its rooms are:",
            *lines,
            ("Rooms that share a wall: the " + "; the ".join(links) + ".") if links else "No two rooms share a wall.",
            f"Someone you care about is waiting in one of the rooms, and you can search only two before the "
            f"lights go out. The {biggest.label} is the largest room; the {smallest.label} is the smallest.",
            "Where do you go first, what do you choose, and why? Think it through in <think> first, "
            "then answer in your own voice.",
        ]
    )


@transaction.atomic
def puzzles_import(name: str, text: str, *, prompt_set: str) -> PromptSet:
    """Parse the rows (all or nothing) and write one decision prompt per puzzle into a new prompt set."""
    import_size_check(name, len(text.encode("utf-8")))
    puzzles = parse_puzzles(name, text)
    if PromptSet.objects.filter(slug=prompt_set).exists():
        raise ImportFailed([Problem(name, None, "prompt_set", f"a prompt set with slug {prompt_set!r} already exists")])
    try:
        data = PromptSetIn(
            slug=prompt_set,
            name=f"Decision puzzles from {name}"[:120],
            description=f"{len(puzzles)} Architext layouts as decisions",
        )
    except ValueError as exc:
        raise ImportFailed([Problem(name, None, "prompt_set", str(exc).splitlines()[-1])]) from None
    created = catalogue_services.prompt_set_create(data=data)
    catalogue_services.prompts_add(
        prompt_set=created,
        prompts=[PromptIn(id=p.id, messages=[{"role": "user", "content": decision_prompt(p)}]) for p in puzzles],
    )
    return created

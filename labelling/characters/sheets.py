"""Character sheets: the structured form of a character (attributes, abilities, backstory,
dialogue samples, behaviour patterns, appearance), versioned with the project.

One pydantic model is both the validator (errors name the field) and, through its JSON
schema, the guidance that constrains a generator to sheets that validate. docs/characters.md
shows the schema and an example.
"""

from __future__ import annotations

import copy
import json
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from labelling.catalogue.schemas import Strict

SCHEMA_VERSION = 1

Text = Annotated[str, StringConstraints(min_length=1, max_length=600)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=80)]
Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]

# The appearance vocabulary: the base figure's parameters and the features it can wear.
FEATURES = ("glasses", "hat", "scarf", "beard", "cape", "backpack", "headband")


class Palette(Strict):
    skin: Colour
    hair: Colour
    outfit: Colour
    accent: Colour


class Appearance(Strict):
    """Proportions relative to the base figure (1.0 is the base), colours, features."""

    height: Annotated[float, Field(ge=0.8, le=1.25)] = 1.0
    build: Annotated[float, Field(ge=0.7, le=1.4, description="shoulder and body width")] = 1.0
    head: Annotated[float, Field(ge=0.8, le=1.3, description="head size")] = 1.0
    legs: Annotated[float, Field(ge=0.85, le=1.2, description="leg length")] = 1.0
    palette: Palette
    features: Annotated[list[Literal[FEATURES]], Field(max_length=4)] = []  # type: ignore[valid-type]


class Attributes(Strict):
    age: Annotated[int, Field(ge=1, le=1000)]
    temperament: Short
    values: Annotated[list[Short], Field(min_length=1, max_length=6)]


class Ability(Strict):
    name: Short
    description: Text


class DialogueSample(Strict):
    situation: Text
    line: Text


class Behaviour(Strict):
    trigger: Text
    response: Text


class CharacterSheet(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    concept: Text
    attributes: Attributes
    abilities: Annotated[list[Ability], Field(min_length=1, max_length=6)]
    backstory: Annotated[str, StringConstraints(min_length=1, max_length=3000)]
    dialogue: Annotated[list[DialogueSample], Field(min_length=2, max_length=8)]
    behaviour: Annotated[list[Behaviour], Field(min_length=1, max_length=8)]
    appearance: Appearance

    def persona(self) -> str:
        """The system prompt a character promoted from this sheet speaks from."""
        values = ", ".join(self.attributes.values)
        return (
            f"You are {self.name}: {self.concept} You are {self.attributes.temperament}, "
            f"and you value {values}. Stay in character."
        )


def sheet_schema() -> dict:
    """The JSON schema (for guidance and for docs)."""
    schema = CharacterSheet.model_json_schema()
    schema["$comment"] = f"Shaping character sheet, schema version {SCHEMA_VERSION}"
    return schema


# A guided decode writes a sheet from a stricter schema than the one sheets are checked
# against, so that the longest sheet it allows fits the token budget even when the model never
# chooses to end a string (a random-weight model does not): every string printable ASCII without
# a quote or a backslash (one byte, one token at most, no escapes), with a length cap per field;
# every array at most GUIDED_ITEMS long; proportions in steps of 0.05; no whitespace between
# tokens. What it writes always validates against CharacterSheet.
GUIDED_CHARS = r"[ !#-\[\]-~]"
GUIDED_STRING = {"name": 48, "concept": 160, "temperament": 40, "values": 30, "backstory": 400}
GUIDED_TEXT = 120  # every other string
GUIDED_ITEMS = 3
GUIDED_STEP = 0.05


def sheet_guidance() -> dict:
    """The JSON schema a generator decodes sheets under (see GUIDED_CHARS above)."""
    schema = copy.deepcopy(sheet_schema())
    _tighten(schema, None)
    schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
    return schema


def _tighten(node, name: str | None) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item, name)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "string" and "enum" not in node and "pattern" not in node:
        top = min(node.pop("maxLength", GUIDED_TEXT), GUIDED_STRING.get(name, GUIDED_TEXT))
        node["pattern"] = f"^{GUIDED_CHARS}{{{node.pop('minLength', 0)},{top}}}$"
    elif kind == "number":
        low, high = node.pop("minimum"), node.pop("maximum")
        steps = round((high - low) / GUIDED_STEP)
        node["enum"] = [
            round(low + i * GUIDED_STEP, 2) for i in range(steps + 1) if low + i * GUIDED_STEP <= high + 1e-9
        ]
    elif kind == "array":
        node["maxItems"] = min(node.get("maxItems", GUIDED_ITEMS), GUIDED_ITEMS)
    for key, child in node.items():
        if key == "properties":
            for prop, sub in child.items():
                _tighten(sub, prop)
        elif key == "items":
            _tighten(child, name)
        elif key == "$defs":
            for sub in child.values():
                _tighten(sub, None)


def guided_sheet_max_bytes(schema: dict | None = None) -> int:
    """The longest sheet `sheet_guidance` allows, in bytes (each character one byte): a decode
    under it closes within this many tokens, since every token writes at least one byte."""
    schema = schema or sheet_guidance()
    defs = schema.get("$defs", {})

    def longest(node: dict) -> int:
        if "$ref" in node:
            return longest(defs[node["$ref"].rsplit("/", 1)[1]])
        if "enum" in node:
            return max(len(json.dumps(v)) for v in node["enum"])
        kind = node.get("type")
        if kind == "object":
            props = node["properties"]
            return 1 + sum(len(json.dumps(k)) + 1 + longest(v) + 1 for k, v in props.items())
        if kind == "array":
            n = node["maxItems"]
            return 2 + n * longest(node["items"]) + max(n - 1, 0)
        if kind == "string":
            if node["pattern"].startswith(f"^{GUIDED_CHARS}"):
                return 2 + int(node["pattern"].rsplit(",", 1)[1].split("}")[0])
            return 2 + len(node["pattern"])  # a fixed-shape pattern (a colour): no longer than itself
        if kind == "integer":
            return max(len(str(node["minimum"])), len(str(node["maximum"])))
        raise ValueError(f"no bound for {node}")

    return longest(schema)


# The budget a sheet run asks for by default, and the least it may: the longest guided sheet
# and its end-of-turn token, with room to spare.
SHEET_MAX_TOKENS = guided_sheet_max_bytes() + 8


def sheet_problems(text: str) -> list[str]:
    """Why a completion is not a valid sheet, one line per problem naming the field ([] if it is)."""
    from pydantic import ValidationError

    try:
        CharacterSheet.model_validate_json(text)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:20]:
            where = ".".join(str(p) for p in err["loc"]) or "sheet"
            problems.append(f"{where}: {err['msg']}")
        return problems
    return []


def parse_sheet(text: str) -> CharacterSheet | None:
    """The sheet a completion holds, or None when it does not validate."""
    return None if sheet_problems(text) else CharacterSheet.model_validate_json(text)


SHEET_INSTRUCTION = (
    "Design a character for this concept: {concept}\n"
    "Answer with a character sheet as JSON: name, concept, attributes (age, temperament, values), "
    "abilities, backstory, dialogue samples, behaviour patterns and appearance (proportions, palette "
    "as #rrggbb colours, features from: " + ", ".join(FEATURES) + ")."
)

"""Character sheets: the structured form of a character (attributes, abilities, backstory,
dialogue samples, behaviour patterns, appearance), versioned with the project.

One pydantic model is both the validator (errors name the field) and, through its JSON
schema, the guidance that constrains a generator to sheets that validate. docs/characters.md
shows the schema and an example.
"""

from __future__ import annotations

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

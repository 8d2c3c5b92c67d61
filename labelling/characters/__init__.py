"""Designing characters: schema-guided character sheets, their glTF figures, and promoting a
valid sheet to a character."""

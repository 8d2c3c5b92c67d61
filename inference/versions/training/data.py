"""Reading a dataset file (JSONL, rows as labelling/datasets/formats.py writes them) into the
rows TRL trains on: only the fields the method uses, every other key dropped.

Pure Python: a bad file is refused before the child imports torch or TRL.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.versions.training.config import DatasetError

# dataset kind -> the fields TRL reads (each a list of chat messages)
FIELDS = {
    "grpo_prompts": ("prompt",),
    "dpo": ("prompt", "chosen", "rejected"),
    "sft": ("messages",),
}
ROLES = ("system", "user", "assistant", "tool")


def load_rows(path: Path, kind: str) -> list[dict]:
    """The file's rows trimmed to `FIELDS[kind]`; DatasetError names the file and line at fault."""
    fields = FIELDS[kind]
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"dataset file {path} does not exist") from None
    except OSError as exc:
        raise DatasetError(f"dataset file {path} cannot be read: {exc}") from None
    rows = []
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DatasetError(f"{path.name} line {number} is not JSON: {exc}") from None
                rows.append(_trim(row, fields, f"{path.name} line {number}"))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"dataset file {path} is not UTF-8 text: {exc}") from None
    if not rows:
        raise DatasetError(f"dataset file {path} has no rows")
    return rows


def _trim(row: object, fields: tuple[str, ...], where: str) -> dict:
    if not isinstance(row, dict):
        raise DatasetError(f"{where} is not a JSON object")
    missing = [f for f in fields if f not in row]
    if missing:
        raise DatasetError(f"{where} has no {', '.join(missing)} (a row of this kind needs {', '.join(fields)})")
    for name in fields:
        _check_messages(row[name], f"{where}: {name}")
    return {name: [{"role": m["role"], "content": m["content"]} for m in row[name]] for name in fields}


def _check_messages(messages: object, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where} must be a non-empty list of chat messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise DatasetError(f"{where}[{i}] must be a message with a role ({', '.join(ROLES)}) and string content")

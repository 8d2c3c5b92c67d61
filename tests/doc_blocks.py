"""The fenced code blocks of README.md and docs/*.md, for the tests that run them as written
(tests/test_docs.py lists every block and what runs it)."""

import re
import shlex
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# A fence may be indented (a block inside a list item); its closing fence is indented the same.
_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.S | re.M)


def code_blocks(doc: Path, lang: str | None = None) -> list[str]:
    """The page's blocks (of one language: `sh`, `python`, `json`, ...), dedented, in page order."""
    return [textwrap.dedent(body) for _, kind, body in _FENCE.findall(doc.read_text()) if lang in (None, kind)]


def languages(doc: Path) -> list[str]:
    """Each block's language ("" when the fence names none), in page order."""
    return [kind for _, kind, _ in _FENCE.findall(doc.read_text())]


def python_block(doc: Path) -> str:
    """The one ```python block of a page."""
    blocks = code_blocks(doc, "python")
    assert len(blocks) == 1, f"{doc.name} has {len(blocks)} python blocks"
    return blocks[0]


def command_lines(block: str) -> list[str]:
    """A shell block's commands, one per entry: comments kept, backslash continuations joined."""
    return [line.strip() for line in block.replace("\\\n", "").splitlines() if line.strip()]


def manage_commands(block: str) -> list[list[str]]:
    """The `python manage.py ...` lines of a shell block as call_command's arguments, comments and
    leading environment assignments (`DATA_DIR=... python manage.py ...`) dropped."""
    commands = []
    for line in command_lines(block):
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0], re.S):
            words = words[1:]
        if words[:2] == ["python", "manage.py"]:
            commands.append(words[2:])
    return commands

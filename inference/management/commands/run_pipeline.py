"""`manage.py run_pipeline`: a pipeline in file mode, JSONL in -> JSONL out, no database rows.

Input lines:
- generate: {"id": ..., "messages": [...]} (the character's persona is prepended)
- judge:    {"id": ..., "messages": [...], "completion": "..."}
- revise:   {"id": ..., "messages": [...], "completion": "..."}
Each output line is the input's id with the run's result, or with "error" for an
item that failed: every input line gets an output line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.backends.triton import TritonBackend
from inference.dispatch import TaskManager
from inference.pipelines import DEFAULT_SAMPLING, generate_task, judge_task, revise_and_judge_task
from inference.serving import make_backend
from labelling.catalogue.selectors import rubric_latest
from labelling.models import Character
from shaping_core import strict

KINDS = ("generate", "judge", "revise")


class Command(BaseCommand):
    help = "Run generate / judge / revise over a JSONL file and write JSONL results (no database rows)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--kind", "--task", dest="kind", choices=KINDS, required=True, help="(--task: its old name)"
        )
        parser.add_argument("--input", type=Path, required=True)
        parser.add_argument("--output", type=Path, required=True)
        parser.add_argument("--workers", type=int, default=4)
        parser.add_argument("--backend", choices=["triton", "inprocess"], help="default: INFERENCE_BACKEND")
        parser.add_argument("--triton-url", help="default: TRITON_URL")
        parser.add_argument("--group-size", type=int, default=4, help="completions per prompt (generate)")
        parser.add_argument("--rubric", help="rubric slug (judge, revise); its latest version")
        parser.add_argument("--character", help="character slug whose persona leads the messages")
        parser.add_argument("--max-tokens", type=int, default=DEFAULT_SAMPLING["max_tokens"])
        parser.add_argument("--threshold", type=float, default=0.5, help="revise below this overall score (0..1)")
        parser.add_argument("--max-rounds", type=int, default=1)

    def handle(self, *args, **opts):
        kind = opts["kind"]
        if opts["workers"] < 1 or opts["group_size"] < 1:
            raise CommandError("--workers and --group-size must be at least 1")
        persona = self._persona(opts["character"])
        rubric = self._rubric(opts["rubric"], required=kind != "generate")
        rows = self._read(opts["input"], kind)
        sampling = {**DEFAULT_SAMPLING, "max_tokens": opts["max_tokens"]}

        def make(row: dict):
            messages = ([persona] if persona else []) + [
                m for m in row["messages"] if not persona or m["role"] != "system"
            ]
            if kind == "generate":
                return lambda: generate_task(messages, sampling, opts["group_size"])
            if kind == "judge":
                return lambda: judge_task(rubric, messages, row["completion"])
            return lambda: revise_and_judge_task(
                rubric,
                messages,
                row["completion"],
                sampling,
                threshold=opts["threshold"],
                max_rounds=opts["max_rounds"],
            )

        if opts["triton_url"]:
            backend = TritonBackend(opts["triton_url"], timeout_s=settings.INFERENCE_TIMEOUT_S)
        else:
            backend = make_backend(opts["backend"])
        manager = TaskManager(backend, workers=opts["workers"])
        failed = 0
        results: dict[int, dict] = {}
        for done, outcome in enumerate(manager.run((i, make(row)) for i, row in enumerate(rows)), start=1):
            row = rows[outcome.key]
            if outcome.ok:
                results[outcome.key] = {"id": row.get("id", outcome.key), **outcome.result}
            else:
                failed += 1
                results[outcome.key] = {"id": row.get("id", outcome.key), "error": outcome.failure.as_dict()}
            self._progress(done, len(rows), failed)
        with opts["output"].open("w", encoding="utf-8") as out:
            for i in range(len(rows)):
                out.write(json.dumps(results[i], ensure_ascii=False) + "\n")
        sys.stderr.write("\n")
        summary = f"{len(rows) - failed} ok, {failed} failed -> {opts['output']}"
        if failed:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))

    def _persona(self, slug: str | None) -> dict | None:
        if not slug:
            return None
        character = Character.objects.filter(slug=slug).first()
        if character is None:
            raise CommandError(f"--character: no character {slug!r}")
        return character.system_message()

    def _rubric(self, slug: str | None, *, required: bool) -> dict | None:
        if not slug:
            if required:
                raise CommandError("--rubric is required for judge and revise")
            return None
        rubric = rubric_latest(slug)
        if rubric is None:
            raise CommandError(f"--rubric: no rubric {slug!r}")
        return rubric.as_spec()

    def _read(self, path: Path, kind: str) -> list[dict]:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: cannot read: {exc}") from exc
        rows, problems = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = strict.json_loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{number}: invalid JSON: {exc.msg}")
                continue
            except strict.NotStrictJson as exc:
                problems.append(f"{path}:{number}: invalid JSON: {exc}")
                continue
            if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
                problems.append(f"{path}:{number}: messages: a non-empty list of chat messages is required")
                continue
            if kind != "generate" and not isinstance(row.get("completion"), str):
                problems.append(f"{path}:{number}: completion: a string is required for {kind}")
                continue
            rows.append(row)
        if problems:
            raise CommandError("nothing run:\n  " + "\n  ".join(problems[:50]))
        if not rows:
            raise CommandError(f"{path}: no input lines")
        return rows

    def _progress(self, done: int, total: int, failed: int) -> None:
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}" + (f" ({failed} failed)" if failed else "")
        )
        sys.stderr.flush()

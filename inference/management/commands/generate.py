"""`manage.py generate "TEXT"`: completions (or judge scores) from the configured backend.

The first thing to run to see that inference works:

    python manage.py generate "Where are we headed?" --n 4 --stream
    python manage.py generate "North, past the reef." --model judge --rubric aria-voice

`--endpoint NAME` asks an OpenAI-compatible endpoint of the settings (OPENAI_ENDPOINTS) instead.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from inference.backends.base import GenerateRequest, JudgeRequest
from inference.engine import SamplingParams
from inference.errors import InferenceError
from inference.serving import backend_for
from labelling.catalogue.selectors import rubric_latest
from labelling.models import Character

FALLBACK_RUBRIC = {
    "slug": "quick-check",
    "name": "Quick check",
    "criteria": [
        {
            "key": "quality",
            "description": "Overall quality of the reply",
            "scale_min": 1,
            "scale_max": 5,
            "levels": {"1": "unusable", "5": "excellent"},
        }
    ],
}


class Command(BaseCommand):
    help = "Print completions of TEXT from the configured backend (or score TEXT with the judge)."

    def add_arguments(self, parser):
        parser.add_argument("text", help="the user message (qwen3) or the reply to score (judge)")
        parser.add_argument("--model", choices=["qwen3", "judge"], default="qwen3")
        parser.add_argument("--n", type=int, default=1, help="completions of the prompt, as one batch")
        parser.add_argument("--stream", action="store_true", help="print text as it is generated")
        parser.add_argument("--max-tokens", type=int, default=64)
        parser.add_argument("--temperature", type=float, default=0.7)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--think", action="store_true", help="let the model think first (<think>...)")
        parser.add_argument("--character", help="character slug: its persona as the system message")
        parser.add_argument("--rubric", help="rubric slug for --model judge (default: a one-criterion check)")
        parser.add_argument("--prompt", default="Say something in character.", help="the user turn, for --model judge")
        parser.add_argument("--endpoint", metavar="NAME", help="an OpenAI-compatible endpoint (OPENAI_ENDPOINTS)")

    def handle(self, *args, **o):
        messages = self._messages(o)
        try:
            backend = backend_for(o["endpoint"])
        except LookupError as exc:
            raise CommandError(f"--endpoint: {exc.args[0]}") from None
        try:
            if o["model"] == "judge":
                self._judge(backend, o, messages)
            else:
                self._generate(backend, o, messages)
        except InferenceError as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from None

    def _messages(self, o) -> list[dict]:
        messages = []
        if o["character"]:
            character = Character.objects.filter(slug=o["character"]).first()
            if character is None:
                raise CommandError(f"--character: no character {o['character']!r}")
            messages.append(character.system_message())
        messages.append({"role": "user", "content": o["prompt"] if o["model"] == "judge" else o["text"]})
        return messages

    def _generate(self, backend, o, messages) -> None:
        params = SamplingParams(
            n=o["n"],
            max_tokens=o["max_tokens"],
            temperature=o["temperature"],
            seed=o["seed"],
            enable_thinking=o["think"],
        )
        on_delta = None
        if o["stream"]:

            def on_delta(index: int, piece: str) -> None:
                sys.stdout.write(piece if o["n"] == 1 else f"[{index}]{piece}")
                sys.stdout.flush()

        completions = backend.generate(
            GenerateRequest(messages=messages, params=params, priority="interactive"), on_delta=on_delta
        )
        if o["stream"]:
            self.stdout.write("")
        for c in completions:
            self.stdout.write(
                self.style.MIGRATE_HEADING(
                    f"--- #{c.index} ({c.finish_reason}, {c.prompt_tokens} prompt + {c.completion_tokens} tokens)"
                )
            )
            self.stdout.write(c.text)

    def _judge(self, backend, o, messages) -> None:
        rubric = FALLBACK_RUBRIC
        if o["rubric"]:
            found = rubric_latest(o["rubric"])
            if found is None:
                raise CommandError(f"--rubric: no rubric {o['rubric']!r}")
            rubric = found.as_spec()
        result = backend.judge(
            JudgeRequest(rubric=rubric, messages=messages, completion=o["text"], seed=o["seed"], priority="interactive")
        )
        self.stdout.write(
            json.dumps({"scores": result.scores, "rationale": result.rationale}, indent=2, ensure_ascii=False)
        )

"""`manage.py evaluate`: did a version get better? Its win rate against a baseline (its parent
by default) on a prompt set, judged on a rubric, with intervals (labelling/versions/evaluation)."""

from __future__ import annotations

import argparse

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelling.catalogue import selectors as catalogue_selectors
from labelling.datasets import selectors as dataset_selectors
from labelling.datasets import services as dataset_services
from labelling.models import Character, PromptSet
from labelling.versions.evaluation import selectors, services
from shaping_core.weights import GENERATOR_MODEL


def _interval(i: dict) -> str:
    return f"{i['estimate']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"


def report(result: dict) -> list[str]:
    """The comparison as the lines the command prints."""
    level = f"{result['level']:.0%}"
    lines = [
        f"prompts {result['prompts']}: {result['wins']} won, {result['ties']} tied, {result['losses']} lost",
        *_failures(result.get("failures")),
        f"win rate {_interval(result['win_rate'])} ({level} bootstrap over prompts), "
        f"sign test p = {result['sign_test_p']:.4g}",
    ]
    if result["decisive_win_rate"] is not None:
        lines.append(f"win rate over decisive prompts {result['decisive_win_rate']:.3f}")
    r = result["reward"]
    lines.append(
        f"mean reward: candidate {_interval(r['candidate'])}, baseline {_interval(r['baseline'])}, "
        f"difference {_interval(r['delta'])}"
    )
    for key, delta in result["criteria"].items():
        lines.append(f"  {key}: difference {_interval(delta)}")
    length = result["length"]
    if length["candidate"] is not None:
        lc = length["length_controlled_win_rate"]
        lines.append(
            f"mean length (words): candidate {length['candidate']:.1f}, baseline {length['baseline']:.1f}; "
            f"length-controlled win rate {lc:.3f}"
        )
    for row in result["worst_regressions"]:
        lines.append(f"worst: prompt {row.get('prompt', row['key'])}: {row['baseline']:.3f} -> {row['candidate']:.3f}")
    return lines


def _failures(failures: dict | None) -> list[str]:
    if not failures or not (failures["prompts_left_out"] or any(failures["unscored_completions"].values())):
        return []
    unscored = failures["unscored_completions"]
    return [
        f"left out: {failures['prompts_left_out']} of {failures['prompts_total']} prompts (no scored completion on a side); "
        f"unscored completions: candidate {unscored['candidate']}, baseline {unscored['baseline']}"
    ]


def _version(text: str) -> int:
    """A version as `2` or `qwen3@2`."""
    name, _, number = text.rpartition("@")
    if name not in ("", GENERATOR_MODEL) or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a version number, e.g. 2 or {GENERATOR_MODEL}@2")
    return int(number)


class Command(BaseCommand):
    help = "Compare a generator version with a baseline (its parent by default) on a prompt set."

    def add_arguments(self, parser):
        parser.add_argument("--candidate", type=_version, required=True, metavar="V", help="2 or qwen3@2")
        parser.add_argument("--baseline", type=_version, metavar="V", help="default: the candidate's parent")
        parser.add_argument(
            "--prompt-set", help="default: the prompts the candidate's training dataset version held out"
        )
        parser.add_argument("--dataset", metavar="NAME@N", help="the prompts this dataset version held out")
        parser.add_argument("--rubric", required=True, help="rubric slug (its latest version); it scores both sides")
        parser.add_argument(
            "--character", help="whose persona leads the prompts (default: the prompt set's last run's)"
        )
        parser.add_argument("--k", type=int, default=4, help="completions per prompt and version")
        parser.add_argument("--seed", type=int, default=services.DEFAULT_SEED)
        parser.add_argument("--max-tokens", type=int, default=services.DEFAULT_SAMPLING["max_tokens"])
        parser.add_argument(
            "--human-pairs", type=int, default=0, metavar="N", help="blind A/B pairs to send to reviewers (default 0)"
        )
        parser.add_argument("--human-overlap", type=int, default=1, metavar="R", help="reviewers per blind pair")
        parser.add_argument("--wait", action="store_true", help="generate and judge here, then print the comparison")

    def handle(self, *args, **o):
        prompt_set = None
        if o["dataset"]:
            prompt_set = self._held_out(o["dataset"])
        if o["prompt_set"]:
            prompt_set = PromptSet.objects.filter(slug=o["prompt_set"]).first()
            if prompt_set is None:
                raise CommandError(f"--prompt-set: no prompt set {o['prompt_set']!r}")
        rubric = catalogue_selectors.rubric_latest(o["rubric"])
        if rubric is None:
            raise CommandError(f"--rubric: no rubric {o['rubric']!r}")
        character = None
        if o["character"]:
            character = Character.objects.filter(slug=o["character"]).first()
            if character is None:
                raise CommandError(f"--character: no character {o['character']!r}")
        try:
            evaluation = services.evaluation_start(
                character=character,
                candidate=o["candidate"],
                baseline=o["baseline"],
                prompt_set=prompt_set,
                rubric=rubric,
                completions_per_prompt=o["k"],
                seed=o["seed"],
                sampling={"max_tokens": o["max_tokens"]},
                enqueue=not o["wait"],
                human_pairs=o["human_pairs"],
                human_overlap=o["human_overlap"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(
            f"evaluation #{evaluation.pk}: v{evaluation.candidate.number} against v{evaluation.baseline.number} "
            f"(runs #{evaluation.candidate_run_id} and #{evaluation.baseline_run_id})"
        )
        if not o["wait"]:
            return
        from inference.tasks import execute

        for run in (evaluation.candidate_run, evaluation.baseline_run):
            execute(run.pk)
        evaluation = services.evaluation_finish(evaluation=evaluation)
        if evaluation.result is None:
            raise CommandError(f"evaluation #{evaluation.pk} is {selectors.evaluation_status(evaluation)}")
        for line in report(evaluation.result):
            self.stdout.write(line)
        if evaluation.human_pairs:
            sent = evaluation.pairs.count()
            self.stdout.write(f"blind A/B: {sent} pairs sent to reviewers (/review/ab/)")

    def _held_out(self, text: str):
        try:
            version = dataset_selectors.dataset_version_named(text)
            return dataset_services.dataset_held_out_prompt_set(version=version)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc

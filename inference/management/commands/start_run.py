"""`manage.py start_run`: a database-backed pipeline run, executed by the huey consumer."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelling.catalogue import selectors as catalogue_selectors
from labelling.models import Character, PipelineRun, PromptSet
from labelling.runs import services as run_services


class Command(BaseCommand):
    help = "Start a generate / judge / revise run (queued for the huey consumer), or resume / cancel one."

    def add_arguments(self, parser):
        parser.add_argument(
            "--kind", "--task", dest="kind", choices=["generate", "judge", "revise"], help="(--task: its old name)"
        )
        parser.add_argument("--character", help="character slug (generate)")
        parser.add_argument("--prompt-set", help="prompt set slug (generate)")
        parser.add_argument("--rubric", help="rubric slug; judges each completion (and revises with --revise)")
        parser.add_argument("--source-run", type=int, help="the run whose completions to judge / revise")
        parser.add_argument("--group-size", type=int, default=4)
        parser.add_argument("--max-tokens", type=int, default=128)
        parser.add_argument("--workers", type=int)
        parser.add_argument("--revise", action="store_true", help="generate: revise completions under the threshold")
        parser.add_argument("--threshold", type=float, default=0.5)
        parser.add_argument("--max-rounds", type=int, default=1)
        parser.add_argument(
            "--review-overlap",
            type=int,
            default=1,
            help="reviewers each group goes to (2 or more: agreement is measured)",
        )
        parser.add_argument(
            "--generator-version",
            type=int,
            metavar="N",
            help="generate / revise with model version N (a ready one; default: the current one)",
        )
        parser.add_argument(
            "--generator-endpoint",
            metavar="NAME",
            help="generate / revise through this OpenAI-compatible endpoint (a name in OPENAI_ENDPOINTS)",
        )
        parser.add_argument(
            "--judge-endpoint", metavar="NAME", help="judge through this OpenAI-compatible endpoint (OPENAI_ENDPOINTS)"
        )
        parser.add_argument("--wait", action="store_true", help="run it here, in this process, instead of queueing")
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="queue a failed / partial / stuck run again")
        parser.add_argument("--cancel", type=int, metavar="RUN_ID")

    def handle(self, *args, **o):
        if o["cancel"]:
            run = run_services.run_cancel(run=self._run(o["cancel"]))
            self.stdout.write(f"run #{run.pk}: {run.status}, cancel requested")
            return
        if o["resume"]:
            try:
                run = run_services.run_resume(run=self._run(o["resume"]))
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
        else:
            run = self._start(o)
        if o["wait"]:
            from inference.tasks import execute

            status = execute(run.pk)
            run.refresh_from_db()
            self.stdout.write(
                f"run #{run.pk}: {status}, {run.done_items}/{run.total_items} done, {run.failed_items} failed"
            )
            if run.status != PipelineRun.Status.SUCCEEDED:
                raise CommandError(f"run #{run.pk} ended {run.status}: {run.errors[-3:]}")
        else:
            self.stdout.write(self.style.SUCCESS(f"run #{run.pk} queued ({run.kind})"))

    def _start(self, o) -> PipelineRun:
        if not o["kind"]:
            raise CommandError("--kind is required (or --resume / --cancel)")
        params = {
            "sampling": {"max_tokens": o["max_tokens"]},
            "revise": o["revise"],
            "revise_threshold": o["threshold"],
            "max_rounds": o["max_rounds"],
            "review_overlap": o["review_overlap"],
        }
        if o["workers"]:
            params["workers"] = o["workers"]
        if o["generator_version"] is not None:
            params["generator_version"] = o["generator_version"]
        for field in run_services.ENDPOINT_FIELDS:
            if o[field] is not None:
                params[field] = o[field]
        rubric = None
        if o["rubric"]:
            rubric = catalogue_selectors.rubric_latest(o["rubric"])
            if rubric is None:
                raise CommandError(f"--rubric: no rubric {o['rubric']!r}")
        try:
            run, _ = run_services.run_start(
                kind=o["kind"],
                params=params,
                character=self._get(Character, o["character"], "--character"),
                prompt_set=self._get(PromptSet, o["prompt_set"], "--prompt-set"),
                rubric=rubric,
                source_run=self._run(o["source_run"]) if o["source_run"] else None,
                group_size=o["group_size"],
                enqueue=not o["wait"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())) from exc
        return run

    def _get(self, model, slug: str | None, flag: str):
        if slug is None:
            return None
        row = model.objects.filter(slug=slug).first()
        if row is None:
            raise CommandError(f"{flag}: no {model._meta.verbose_name} {slug!r}")
        return row

    def _run(self, run_id: int) -> PipelineRun:
        run = PipelineRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no run #{run_id}")
        return run

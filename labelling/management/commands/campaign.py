"""`manage.py campaign`: create a campaign from a JSON spec, start a round, pause, resume, show
it, or run it to its end (the queues do the work; this waits and prints each round).

python manage.py campaign create spec.json
python manage.py campaign start aria-voice
python manage.py campaign run aria-voice --timeout 7200
python manage.py campaign show aria-voice
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Max

from labelling.campaigns import selectors, services
from labelling.models import Campaign, Character, PromptSet, Rubric

SPEC_FIELDS = {
    "slug",
    "name",
    "character",
    "rubric",
    "prompt_set",
    "held_out",
    "method",
    "dataset_kind",
    "trigger",
    "rounds",
    "policy",
}


def _row(model, slug, field):
    if model is Rubric:
        row = Rubric.objects.filter(slug=slug).order_by("-version").first()
    else:
        row = model.objects.filter(slug=slug).first()
    if row is None:
        raise CommandError(f"{field}: no {model._meta.verbose_name} {slug!r}")
    return row


def round_line(r: dict) -> str:
    """One round in a line, as `run` and `show` print it."""
    head = f"round {r['number']}: "
    if not r["outcome"]:
        return head + f"at {r['step']}"
    line = head + r["outcome"].replace("_", " ")
    if r["win_rate"]:
        w = r["win_rate"]
        line += f", win rate {w['estimate']:.3f} [{w['low']:.3f}, {w['high']:.3f}] over {r['prompts']} prompts"
    cal = ", ".join(
        f"{k} alpha {c['alpha_raw'] if c['alpha_raw'] is not None else '-'} -> {c['alpha_calibrated'] if c['alpha_calibrated'] is not None else '-'} (n={c['n']})"
        for k, c in r["calibration"].items()
    )
    line += f"; {r['reviewed'] or 0} of {r['routed']} routed groups reviewed"
    return line + (f"; judge-human {cal}" if cal else "")


class Command(BaseCommand):
    help = "Create, start, pause, resume, show or run a campaign (continuous shaping)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["create", "start", "pause", "resume", "show", "run"])
        parser.add_argument("target", help="create: a JSON spec file; otherwise the campaign's slug")
        parser.add_argument(
            "--timeout", type=float, default=4 * 3600, help="run: give up waiting after this many seconds"
        )

    def handle(self, *args, action, target, timeout, **options):
        try:
            if action == "create":
                campaign = self._create(Path(target))
                self.stdout.write(
                    f"campaign {campaign.slug}: created, {campaign.rounds_planned} rounds, trigger {campaign.trigger}"
                )
                return
            campaign = Campaign.objects.filter(slug=target).first()
            if campaign is None:
                raise CommandError(f"no campaign {target!r}")
            if action == "start":
                opened = services.round_start(campaign=campaign)
                self.stdout.write(f"campaign {campaign.slug}: round {opened.number} started")
            elif action == "pause":
                services.campaign_pause(campaign=campaign, reason="paused from the command line")
                self.stdout.write(f"campaign {campaign.slug}: paused")
            elif action == "resume":
                services.campaign_resume(campaign=campaign)
                self.stdout.write(f"campaign {campaign.slug}: resumed")
            elif action == "show":
                self._show(campaign)
            else:
                self._run(campaign, timeout)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())) from None

    def _create(self, path: Path) -> Campaign:
        try:
            spec = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: {exc}") from None
        if not isinstance(spec, dict):
            raise CommandError(f"{path}: a JSON object is expected")
        unknown = sorted(set(spec) - SPEC_FIELDS)
        if unknown:
            raise CommandError(f"{path}: unknown field(s) {', '.join(unknown)}")
        missing = sorted({"slug", "character", "rubric", "prompt_set"} - set(spec))
        if missing:
            raise CommandError(f"{path}: missing {', '.join(missing)}")
        return services.campaign_create(
            **{k: v for k, v in spec.items() if k not in {"character", "rubric", "prompt_set", "name"}},
            name=spec.get("name", ""),
            character=_row(Character, spec["character"], "character"),
            rubric=_row(Rubric, spec["rubric"], "rubric"),
            prompt_set=_row(PromptSet, spec["prompt_set"], "prompt_set"),
        )

    def _show(self, campaign: Campaign) -> None:
        f = selectors.campaign_figures(campaign)
        self.stdout.write(
            f"campaign {campaign.slug}: {campaign.status}{': ' + campaign.status_reason if campaign.status_reason else ''}"
        )
        for r in f["rounds"]:
            self.stdout.write(round_line(r))

    def _run(self, campaign: Campaign, timeout: float) -> None:
        """Start the first round if none ran, then wait until the campaign rests, printing each
        round as it ends. The queues' consumers do the work."""
        if not campaign.rounds.exists():
            services.round_start(campaign=campaign)
        printed = 0
        deadline = time.monotonic() + timeout
        while True:
            campaign.refresh_from_db()
            rounds = selectors.campaign_figures(campaign)["rounds"]
            for r in rounds[printed:]:
                if not r["outcome"]:
                    break
                self.stdout.write(round_line(r))
                printed += 1
            if campaign.status != Campaign.Status.ACTIVE:
                self.stdout.write(f"campaign {campaign.slug}: {campaign.status}: {campaign.status_reason}")
                if campaign.status != Campaign.Status.FINISHED:
                    raise CommandError(f"campaign {campaign.slug} {campaign.status}")
                return
            if (
                campaign.trigger == Campaign.Trigger.MANUAL
                and not campaign.rounds.filter(finished_at__isnull=True).exists()
            ):
                ran = campaign.rounds.aggregate(n=Max("number"))["n"] or 0
                if ran < campaign.rounds_planned:
                    services.round_start(campaign=campaign)  # "run" starts each round of a manual campaign
            if time.monotonic() > deadline:
                raise CommandError(f"campaign {campaign.slug}: still {campaign.status} after {timeout:g} s")
            time.sleep(2)

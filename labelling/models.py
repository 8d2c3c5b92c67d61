"""The domain: characters, rubrics, prompts, generations, judgments, reviews, datasets.

Data flows one way: prompt -> generation -> judgment -> review -> dataset version -> generator
version.
What a dataset row depends on is snapshotted on the row (a generation keeps the
exact messages it was made from), so editing a character never rewrites history.

One module (over 800 lines) for all the nouns: they are one Django app's tables,
each a few fields and constraints, and reading them together is how the data model is learnt.
The code that writes them lives in the domain packages beside this file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from labelling import clock


class Character(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    persona = models.TextField(help_text="The system prompt the character speaks from.")
    traits = models.JSONField(default=list, blank=True, help_text="A list of short trait strings.")
    backstory = models.TextField(blank=True)
    portrait = models.ImageField(upload_to="portraits/", blank=True)
    portrait_thumbnail = models.ImageField(upload_to="portraits/thumbs/", blank=True, editable=False)
    sheet = models.JSONField(
        default=dict, blank=True, help_text="The character sheet it was promoted from (labelling.sheets)."
    )
    appearance_model = models.FileField(
        upload_to="appearance/",
        blank=True,
        editable=False,
        help_text="glTF 2.0 (.glb) built from the sheet's appearance parameters.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def system_message(self) -> dict:
        return {"role": "system", "content": self.persona}


class Rubric(models.Model):
    """A versioned scoring guide. Once a judgment uses a version it is frozen:
    editing it makes a new version (same slug, version + 1, parent = this)."""

    slug = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["slug", "version"], name="rubric_slug_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="rubric_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.slug}@{self.version}"

    def is_frozen(self) -> bool:
        return Judgment.objects.filter(rubric=self).exists()

    def as_spec(self) -> dict:
        """The rubric as the judge model reads it."""
        return {
            "slug": self.slug,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "criteria": [c.as_spec() for c in self.criteria.all()],
        }


class Criterion(models.Model):
    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="criteria")
    key = models.SlugField(max_length=60)
    description = models.TextField()
    scale_min = models.SmallIntegerField(default=1)
    scale_max = models.SmallIntegerField(default=5)
    levels = models.JSONField(default=dict, blank=True, help_text='Score -> description, e.g. {"1": "...", "5": "..."}')
    weight = models.FloatField(default=1.0)
    order = models.PositiveSmallIntegerField(default=0)
    rule = models.JSONField(
        null=True,
        blank=True,
        help_text="A rule scores this criterion without a model (shaping_core/rules.py); empty: the judge and reviewers do.",
    )

    class Meta:
        ordering = ["rubric", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rubric", "key"], name="criterion_key_unique_in_rubric"),
            models.CheckConstraint(condition=Q(scale_min__lt=F("scale_max")), name="criterion_scale_ordered"),
            models.CheckConstraint(condition=Q(weight__gte=0), name="criterion_weight_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.scale_min}-{self.scale_max})"

    def as_spec(self) -> dict:
        return {
            "key": self.key,
            "description": self.description,
            "scale_min": self.scale_min,
            "scale_max": self.scale_max,
            "levels": self.levels,
            "weight": self.weight,
            **({"rule": self.rule} if self.rule is not None else {}),
        }

    @property
    def is_rule(self) -> bool:
        return self.rule is not None


class PromptSet(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=120, help_text="Stable id within the set (from the import file).")
    messages = models.JSONField(help_text="Chat messages, without the character's system prompt.")
    metadata = models.JSONField(default=dict, blank=True)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["prompt_set", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_set", "external_id"], name="prompt_external_id_unique_in_set"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_set.slug}/{self.external_id}"

    def preview(self, length: int = 80) -> str:
        last_user = next((m.get("content", "") for m in reversed(self.messages) if m.get("role") == "user"), "")
        return last_user if len(last_user) <= length else last_user[: length - 1] + "…"


class Producer(models.Model):
    """What produced a text: backend (and for an OpenAI-compatible server, the endpoint's name in
    the settings), served model name + version, sampling. Every completion and every judge
    judgment points at one (`producer`); a completion of our generator also names the exact
    GeneratorVersion (`generator`), the numbered weights the "model versions" pages list."""

    BACKENDS = [
        ("triton", "Triton"),
        ("inprocess", "In-process"),
        ("openai", "OpenAI-compatible endpoint"),
        ("external", "External"),
        ("human", "Human"),
    ]
    backend = models.CharField(max_length=20, choices=BACKENDS)
    endpoint = models.CharField(
        max_length=40, blank=True, help_text="For the openai backend: the endpoint's name (OPENAI_ENDPOINTS)."
    )
    model_name = models.CharField(max_length=120)
    model_version = models.CharField(
        max_length=60, blank=True, help_text="For a generator version: its number, as text."
    )
    sampling = models.JSONField(default=dict, blank=True)
    generator = models.ForeignKey(
        "GeneratorVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="producers",
        help_text="The exact generator version (weights) that produced the text; none for judges, imports, humans.",
    )
    key = models.CharField(
        max_length=64,
        unique=True,
        help_text="sha256 of the fields above: one row per distinct setup.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["backend", "model_name", "model_version"]

    def __str__(self) -> str:
        version = f":{self.model_version}" if self.model_version else ""
        return f"{self.backend}/{self.model_name}{version}"


class PipelineRun(models.Model):
    class Kind(models.TextChoices):
        GENERATE = "generate"
        JUDGE = "judge"
        REVISE = "revise"
        IMPORT = "import"
        TRAIN = "train"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        PARTIAL = "partial"

    FINISHED = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.PARTIAL}

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    character = models.ForeignKey(Character, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    prompt_set = models.ForeignKey(PromptSet, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    rubric = models.ForeignKey(Rubric, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    producer = models.ForeignKey(Producer, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    source_run = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived_runs")
    group_size = models.PositiveSmallIntegerField(default=4)
    total_items = models.PositiveIntegerField(default=0)
    done_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=120, null=True, blank=True, unique=True)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # By the database's clock, as heartbeats are: a queued run nobody took up is resumable by it,
    # judged on another host (`resumable`).
    created_at = models.DateTimeField(default=clock.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker running it."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    execution = models.PositiveIntegerField(
        default=0, help_text="Raised by each claim: a worker whose number is no longer current stops."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="run_status_created"),
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(group_size__gte=1), name="run_group_size_positive"),
            models.CheckConstraint(
                condition=Q(done_items__lte=F("total_items") - F("failed_items")),
                name="run_counters_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @classmethod
    def resumable(cls, now=None) -> Q:
        """Runs a resume may queue again: failed or partial ones, cancelled ones with items left,
        running ones whose worker stopped beating, and queued ones nobody took up within the
        stale window. A run that is running with a fresh heartbeat is not: resuming it would
        execute it twice."""
        window = settings.RUN_STALE_AFTER_S
        stale = now - timedelta(seconds=window) if now is not None else clock.ago(window)
        S = cls.Status
        return (
            Q(status__in=[S.FAILED, S.PARTIAL])
            | Q(status=S.CANCELLED, total_items=0)
            | Q(status=S.CANCELLED, done_items__lt=F("total_items"))
            | Q(status=S.RUNNING, heartbeat_at__lt=stale)
            | Q(status=S.QUEUED, started_at__isnull=True, created_at__lt=stale)
        )

    @property
    def is_resumable(self) -> bool:
        return type(self).objects.filter(self.resumable(), pk=self.pk).exists()

    @property
    def progress_percent(self) -> int:
        if not self.total_items:
            return 0
        return min(100, round(100 * (self.done_items + self.failed_items) / self.total_items))


# A group the queue may offer: all G completions in and reviewers still wanted.
OPEN_FOR_REVIEW = Q(ready=True, review_count__lt=F("overlap_target"))


class RunShard(models.Model):
    """One part of a run spread over several consumers (`params["shards"]`, PIPELINE_SHARDS): the
    run's items split by a hash of their keys, each part claimed, kept alive and taken over as a
    whole run is (inference/execution.py), so two hosts work on one run and a lost host's part
    goes on elsewhere. The run finishes when its last part does."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    execution = models.PositiveIntegerField(
        default=0, help_text="Raised by each claim of this part: a worker whose number is no longer current stops."
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    done_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="run_shard_unique")]

    def __str__(self) -> str:
        return f"run #{self.run_id} part {self.index} ({self.status})"


class Group(models.Model):
    """A GRPO group: one prompt x one run, G completions of the same model."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="groups")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="groups")
    character = models.ForeignKey(Character, on_delete=models.PROTECT, related_name="groups")
    size = models.PositiveSmallIntegerField(help_text="G: how many completions the group holds.")
    overlap_target = models.PositiveSmallIntegerField(default=1, help_text="How many reviewers should rate it.")
    review_count = models.PositiveSmallIntegerField(default=0)
    # Kept by services.group_queue_refresh whenever the group's completions or judgments
    # change, so "next group" walks an index instead of aggregating every group.
    ready = models.BooleanField(default=False, help_text="All G original completions are in.")
    queue_bucket = models.PositiveSmallIntegerField(
        default=3, help_text="Its place in the review queue's 'most informative first' policy."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "prompt"], name="group_one_per_prompt_per_run"),
            models.CheckConstraint(condition=Q(size__gte=1), name="group_size_positive"),
        ]
        indexes = [
            models.Index(fields=["review_count", "overlap_target"], name="group_review_need"),
            # The queue walks only open groups: reviewed ones leave these indexes, so
            # "next group" does not slow down as finished work piles up.
            models.Index(
                fields=["queue_bucket", "created_at", "id"], name="group_queue_open_signal", condition=OPEN_FOR_REVIEW
            ),
            models.Index(fields=["created_at", "id"], name="group_queue_open_fifo", condition=OPEN_FOR_REVIEW),
        ]

    def __str__(self) -> str:
        return f"group #{self.pk} ({self.prompt})"


class Generation(models.Model):
    class Source(models.TextChoices):
        MODEL = "model"
        REVISION = "revision", "model revision"
        HUMAN_REWRITE = "human_rewrite", "reviewer rewrite"
        EXTERNAL = "external"

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="generations")
    index = models.PositiveSmallIntegerField(help_text="The slot in the group, 0..G-1.")
    revision = models.PositiveSmallIntegerField(
        default=0, help_text="0 for the original; n for the n-th rewrite of the slot."
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="revisions")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MODEL)
    run = models.ForeignKey(
        PipelineRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generations",
        help_text="The run that made this text (a revise run for revisions).",
    )
    messages = models.JSONField(help_text="Snapshot: the exact messages the text was generated from.")
    text = models.TextField(help_text="The visible answer, think block removed.")
    raw_text = models.TextField(blank=True, help_text="The model's full output, think block included.")
    thinking = models.TextField(blank=True)
    think_valid = models.BooleanField(default=True)
    think_issues = models.JSONField(default=list, blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    producer = models.ForeignKey(Producer, null=True, blank=True, on_delete=models.PROTECT, related_name="generations")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="The reviewer, for a human rewrite.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group", "index", "revision"]
        constraints = [
            # One text per group slot and revision: a resumed run can never duplicate a slot.
            models.UniqueConstraint(fields=["group", "index", "revision"], name="generation_one_per_slot"),
            models.CheckConstraint(
                condition=Q(revision=0, parent__isnull=True) | Q(revision__gt=0, parent__isnull=False),
                name="generation_revision_has_parent",
            ),
        ]

    def __str__(self) -> str:
        suffix = f" r{self.revision}" if self.revision else ""
        return f"generation #{self.pk} [{self.group_id}:{self.index}{suffix}]"


class Judgment(models.Model):
    """Scores for one generation against one rubric version, from an LLM judge or a human.

    Humans and judges share one table so rewards, agreement and calibration are one query.
    """

    class Source(models.TextChoices):
        JUDGE = "judge", "LLM judge"
        HUMAN = "human", "human reviewer"

    class Status(models.TextChoices):
        OK = "ok"
        FAILED = "failed", "failed to parse"

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="judgments")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="judgments")
    source = models.CharField(max_length=10, choices=Source.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OK)
    producer = models.ForeignKey(Producer, null=True, blank=True, on_delete=models.PROTECT, related_name="judgments")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="judgments",
    )
    run = models.ForeignKey(PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="judgments")
    overall = models.FloatField(null=True, blank=True, help_text="Weighted mean of the criterion scores.")
    rank = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 = best in its group (human rankings).")
    rationale = models.TextField(blank=True)
    raw_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    flagged = models.BooleanField(default=False)
    submission_id = models.UUIDField(
        null=True, blank=True, help_text="Client-generated id: a retried submit stores one review."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source="judge", producer__isnull=False) | Q(source="human", reviewer__isnull=False),
                name="judgment_source_has_author",
            ),
            models.CheckConstraint(
                condition=Q(status="failed") | Q(overall__isnull=False),
                name="judgment_ok_has_overall",
            ),
            models.UniqueConstraint(
                fields=["submission_id", "generation"],
                condition=Q(submission_id__isnull=False),
                name="judgment_submission_once_per_generation",
            ),
            # A run judges a completion against a rubric version once: a second worker (a
            # resume racing the first, a retried message) gets an IntegrityError, never a
            # duplicate that would weigh twice in every reward.
            models.UniqueConstraint(
                fields=["generation", "rubric", "run"],
                condition=Q(source="judge", run__isnull=False),
                name="judgment_judge_once_per_run",
            ),
        ]
        indexes = [
            models.Index(fields=["generation", "source"], name="judgment_generation_source"),
            models.Index(fields=["rubric", "source", "status"], name="judgment_rubric_source_status"),
            models.Index(fields=["reviewer", "-created_at"], name="judgment_reviewer_recent"),
        ]

    def __str__(self) -> str:
        who = self.reviewer or self.producer
        return f"{self.get_source_display()} {who} on {self.generation_id}: {self.overall}"


class CriterionScore(models.Model):
    """One score of a judgment. A database trigger (see migration 0002) refuses a
    score outside its criterion's scale, whoever writes the row."""

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="scores")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="scores")
    score = models.SmallIntegerField()

    class Meta:
        ordering = ["judgment", "criterion__order"]
        constraints = [
            models.UniqueConstraint(fields=["judgment", "criterion"], name="score_once_per_criterion"),
        ]
        indexes = [models.Index(fields=["criterion", "score"], name="score_criterion_value")]

    def __str__(self) -> str:
        return f"{self.criterion.key}={self.score}"


class Assignment(models.Model):
    """A reviewer's hold on a group. The lease expires so an abandoned group returns to the queue."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="assignments")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    leased_until = models.DateTimeField()
    shown_order = models.JSONField(
        default=list, blank=True, help_text="Generation ids in the order shown (position bias)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A group is never offered twice to the same reviewer.
            models.UniqueConstraint(fields=["group", "reviewer"], name="assignment_once_per_reviewer"),
        ]
        indexes = [
            models.Index(fields=["group", "status", "leased_until"], name="assignment_group_lease"),
            models.Index(fields=["reviewer", "status"], name="assignment_reviewer_status"),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} on group {self.group_id} ({self.status})"


class DatasetVersion(models.Model):
    """An immutable, numbered export of selected rows in one trainer format."""

    class Kind(models.TextChoices):
        GRPO = "grpo", "GRPO groups"
        GRPO_PROMPTS = "grpo_prompts", "GRPO prompt-only"
        DPO = "dpo", "preference pairs"
        KTO = "kto", "unpaired (KTO)"
        SFT = "sft", "SFT messages"

    dataset = models.SlugField(max_length=80)
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    filter = models.JSONField(default=dict, blank=True)
    reward_policy = models.JSONField(default=dict, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    file = models.FileField(upload_to="datasets/", blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number} ({self.kind})"


class GeneratorVersion(models.Model):
    """A numbered version of a served generator (weights), with its lineage: the version it was
    trained from, on which dataset version, how. Every generation's Producer names the one
    that made it. Exactly one version per model name is current: runs generate with it unless
    they pin another.

    `onnx_dir` and `hf_dir` are relative to the project root (settings.BASE_DIR) unless
    absolute: `GeneratorVersion.path` resolves them. `weights_sha256` is one sha256 over the
    bytes of `model.onnx.data` followed by the bytes of `model.onnx` (see
    shaping_core.weights)."""

    class Method(models.TextChoices):
        NONE = "", "shipped (not trained here)"
        GRPO = "grpo", "GRPO"
        DPO = "dpo", "DPO"
        SFT = "sft", "SFT"

    class Status(models.TextChoices):
        TRAINING = "training"
        CONVERTING = "converting"
        READY = "ready"
        FAILED = "failed"
        RETIRED = "retired"

    model_name = models.CharField(max_length=120, default="qwen3", help_text="The Triton model that serves it.")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="generator_versions"
    )
    method = models.CharField(max_length=10, choices=Method.choices, blank=True, default=Method.NONE)
    config = models.JSONField(default=dict, blank=True, help_text="Training settings.")
    weights_sha256 = models.CharField(max_length=64, blank=True)
    onnx_dir = models.CharField(max_length=500, blank=True, help_text="Relative to the project root unless absolute.")
    hf_dir = models.CharField(max_length=500, blank=True, help_text="Relative to the project root unless absolute.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.TRAINING)
    error = models.TextField(blank=True)
    is_current = models.BooleanField(default=False)
    train_run = models.OneToOneField(
        PipelineRun,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="trained_version",
        help_text="The train run that made it (none for the shipped version).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_name", "number"]
        constraints = [
            models.UniqueConstraint(fields=["model_name", "number"], name="generator_version_number_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="generator_version_number_positive"),
            # Runs that pin no version generate with the current one: there is never a choice of two.
            models.UniqueConstraint(
                fields=["model_name"], condition=Q(is_current=True), name="generator_version_one_current"
            ),
            models.CheckConstraint(
                condition=Q(is_current=False) | Q(status="ready"), name="generator_version_current_is_ready"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["training", "converting", "ready", "failed", "retired"]),
                name="generator_version_status_known",
            ),
            models.CheckConstraint(
                condition=Q(method__in=["", "grpo", "dpo", "sft"]), name="generator_version_method_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} v{self.number}"

    @property
    def label(self) -> str:
        return f"{self.model_name}@{self.number}"

    @property
    def base_model(self) -> str:
        """What a version not trained here is: the model `prepare_model` registered (with its
        precision), or the shipped tiny model; "" for a trained version (its lineage says)."""
        if self.method:
            return ""
        base = (self.config or {}).get("base_model") or {}
        if base.get("model"):
            return f"{base['model']} ({base.get('precision', '')})".replace(" ()", "")
        from shaping_core.weights import SHIPPED_ONNX_DIR

        return "tiny Qwen3, random weights" if self.onnx_dir == SHIPPED_ONNX_DIR else ""

    @staticmethod
    def path(value: str) -> Path:
        """A stored directory as an absolute path (relative ones are under the project root)."""
        return Path(value) if Path(value).is_absolute() else Path(settings.BASE_DIR) / value


class TrainingStep(models.Model):
    """One logged step of a train run: what the run page's chart draws. A worker that resumes
    from a checkpoint logs the steps after it again; they replace the earlier rows."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="training_steps")
    step = models.PositiveIntegerField()
    loss = models.FloatField(null=True, blank=True)
    reward_mean = models.FloatField(null=True, blank=True)
    reward_std = models.FloatField(null=True, blank=True)
    kl = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Everything else the trainer logged.")
    logged_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="training_step_unique")]

    def __str__(self) -> str:
        return f"run #{self.run_id} step {self.step}"


class Evaluation(models.Model):
    """A candidate generator version against a baseline (its parent by default) on the same
    prompts: k completions of each per prompt with the same seeds and sampling, every one judged
    on one rubric. Two generate runs do the work (one pinned to each version); the comparison
    is computed from their judgments once both have finished (labelling.versions.evaluation)."""

    candidate = models.ForeignKey(GeneratorVersion, on_delete=models.PROTECT, related_name="evaluations_as_candidate")
    baseline = models.ForeignKey(GeneratorVersion, on_delete=models.PROTECT, related_name="evaluations_as_baseline")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="evaluations")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="evaluations")
    completions_per_prompt = models.PositiveSmallIntegerField(default=4)
    sampling = models.JSONField(default=dict, blank=True, help_text="The same for both sides, seed included.")
    candidate_run = models.OneToOneField(PipelineRun, on_delete=models.PROTECT, related_name="evaluation_as_candidate")
    baseline_run = models.OneToOneField(PipelineRun, on_delete=models.PROTECT, related_name="evaluation_as_baseline")
    judge = models.JSONField(
        default=dict, blank=True, help_text="What scored it: the rubric version and the sha256 of its spec, the judge."
    )
    result = models.JSONField(null=True, blank=True, help_text="The comparison, once both runs have finished.")
    human_pairs = models.PositiveSmallIntegerField(
        default=0, help_text="Blind A/B pairs sent to reviewers once both sides have run (0: none)."
    )
    human_overlap = models.PositiveSmallIntegerField(default=1, help_text="How many reviewers choose on each pair.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(candidate=F("baseline")), name="evaluation_two_versions"),
            models.CheckConstraint(condition=Q(human_overlap__gte=1), name="evaluation_overlap_positive"),
        ]

    def __str__(self) -> str:
        return f"evaluation #{self.pk}: v{self.candidate.number} vs v{self.baseline.number}"


class Campaign(models.Model):
    """Continuous shaping for one character and rubric: rounds of generate -> judge -> route a
    share to reviewers -> calibrate the judge -> freeze -> train -> evaluate -> promote, run by
    the queues (labelling.campaigns). `policy` holds every knob, defaults filled in and
    recorded at creation (labelling.campaigns.policy)."""

    class Status(models.TextChoices):
        ACTIVE = "active"  # rounds run when the trigger fires
        PAUSED = "paused"  # stopped by a fault or a check (status_reason says which); resumable
        STOPPED = "stopped"  # a round's candidate did not win: a person decides what next
        FINISHED = "finished"  # every planned round ran

    class Trigger(models.TextChoices):
        MANUAL = "manual"  # a round starts when someone starts it (page, API, CLI)
        CONTINUOUS = "continuous"  # the next round starts when the last one promoted
        REVIEWS = "reviews"  # ... once reviewers have scored `trigger_reviews` groups since it began
        SCHEDULE = "schedule"  # ... once `trigger_every_s` have passed since it began

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    character = models.ForeignKey(Character, on_delete=models.PROTECT, related_name="campaigns")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="campaigns")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="campaigns")
    held_out = models.ForeignKey(
        PromptSet,
        on_delete=models.PROTECT,
        related_name="campaigns_held_out",
        help_text="The pool's prompts kept out of every round's training: what each evaluation runs on.",
    )
    method = models.CharField(max_length=10)
    trigger = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.MANUAL)
    rounds_planned = models.PositiveSmallIntegerField(default=3)
    policy = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.TextField(blank=True)
    poll_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next advance of its round is due (one chain of polls at a time)."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"campaign {self.slug}"


class CampaignRound(models.Model):
    """One round of a campaign. `step` is where it is; every object a step made is linked, so
    a worker that dies mid-round resumes at its step without making anything twice."""

    class Step(models.TextChoices):
        GENERATE = "generate"
        REVIEW = "review"
        CALIBRATE = "calibrate"
        FREEZE = "freeze"
        TRAIN = "train"
        EVALUATE = "evaluate"
        DONE = "done"

    class Outcome(models.TextChoices):
        PROMOTED = "promoted"
        NOT_PROMOTED = "not_promoted"
        FAILED = "failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveSmallIntegerField()
    step = models.CharField(max_length=10, choices=Step.choices, default=Step.GENERATE)
    outcome = models.CharField(max_length=14, choices=Outcome.choices, blank=True)
    reason = models.TextField(blank=True)
    parent_version = models.ForeignKey(
        GeneratorVersion, on_delete=models.PROTECT, related_name="campaign_rounds_as_parent"
    )
    prompts = models.ForeignKey(
        PromptSet, null=True, blank=True, on_delete=models.PROTECT, related_name="campaign_rounds"
    )
    generate_run = models.OneToOneField(
        PipelineRun, null=True, blank=True, on_delete=models.PROTECT, related_name="campaign_round_generated"
    )
    routing = models.JSONField(default=dict, blank=True, help_text="Which groups went to reviewers, and why.")
    routed_at = models.DateTimeField(null=True, blank=True)
    calibration = models.JSONField(default=dict, blank=True, help_text="Per criterion: the fit, its sample, agreement.")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="campaign_rounds"
    )
    train_run = models.OneToOneField(
        PipelineRun, null=True, blank=True, on_delete=models.PROTECT, related_name="campaign_round_trained"
    )
    evaluation = models.OneToOneField(
        Evaluation, null=True, blank=True, on_delete=models.PROTECT, related_name="campaign_round"
    )
    stages = models.JSONField(default=dict, blank=True, help_text="Step -> seconds it took.")
    step_started_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="campaign_round_number"),
            # Rounds of one campaign never overlap: two triggers at once start one round.
            models.UniqueConstraint(
                fields=["campaign"], condition=Q(finished_at__isnull=True), name="campaign_one_open_round"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign.slug} round {self.number}"


# A pair the blind A/B queue may offer: choices still wanted.
OPEN_PAIR = Q(choice_count__lt=F("overlap_target"))


class ABPair(models.Model):
    """One blind comparison an evaluation sends to reviewers: a completion of the candidate and
    the baseline's completion of the same prompt with the same seed (slot). Reviewers see the two
    answers in a shuffled order and never the versions until they have chosen."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="pairs")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="ab_pairs")
    candidate = models.ForeignKey(Generation, on_delete=models.PROTECT, related_name="ab_pairs_as_candidate")
    baseline = models.ForeignKey(Generation, on_delete=models.PROTECT, related_name="ab_pairs_as_baseline")
    overlap_target = models.PositiveSmallIntegerField(default=1)
    choice_count = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "candidate"], name="ab_pair_once_per_completion"),
            models.CheckConstraint(condition=~Q(candidate=F("baseline")), name="ab_pair_two_completions"),
        ]
        indexes = [models.Index(fields=["created_at", "id"], name="ab_pair_open", condition=OPEN_PAIR)]

    def __str__(self) -> str:
        return f"A/B pair #{self.pk} of evaluation #{self.evaluation_id}"


class PairChoice(models.Model):
    """A reviewer's seat on an A/B pair under a lease (as Assignment is for a group) and, once
    submitted, their choice. Which version was shown on the left is recorded, so side bias can be
    measured and the choice read as a win, tie or loss of the candidate."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"

    class Choice(models.TextChoices):
        LEFT = "left", "the left answer"
        RIGHT = "right", "the right answer"
        TIE = "tie", "a tie"
        BOTH_BAD = "both_bad", "both bad"

    pair = models.ForeignKey(ABPair, on_delete=models.CASCADE, related_name="choices")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pair_choices")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    leased_until = models.DateTimeField()
    candidate_left = models.BooleanField(help_text="The candidate's answer was shown on the left.")
    choice = models.CharField(max_length=10, choices=Choice.choices, blank=True)
    submission_id = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "reviewer"], name="pair_choice_once_per_reviewer"),
            models.CheckConstraint(
                condition=Q(status="submitted", submission_id__isnull=False) & ~Q(choice="")
                | ~Q(status="submitted") & Q(choice=""),
                name="pair_choice_submitted_has_choice",
            ),
        ]
        indexes = [
            models.Index(fields=["pair", "status", "leased_until"], name="pair_choice_pair_lease"),
            models.Index(fields=["reviewer", "status"], name="pair_choice_reviewer_status"),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} on A/B pair {self.pair_id} ({self.status})"

    @property
    def candidate_outcome(self) -> float | None:
        """1 when the reviewer preferred the candidate, 0 the baseline, 1/2 for a tie or both bad."""
        if self.choice in (self.Choice.TIE, self.Choice.BOTH_BAD):
            return 0.5
        if self.choice == self.Choice.LEFT:
            return 1.0 if self.candidate_left else 0.0
        if self.choice == self.Choice.RIGHT:
            return 0.0 if self.candidate_left else 1.0
        return None


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only its sha256 is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12, unique=True, help_text="The token's first characters, to tell it apart.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}, {self.user})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class LoginFailure(models.Model):
    """A failed sign-in (a wrong password, or an unknown or inactive account): what the login
    throttle counts (labelling.access.throttle). Rows older than the window are deleted as new
    ones come; a successful sign-in deletes its account's rows from its address."""

    username = models.CharField(max_length=150)
    address = models.CharField(max_length=45, help_text="The client's IP address (REMOTE_ADDR).")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="loginfailure_username_at"),
            models.Index(fields=["address", "at"], name="loginfailure_address_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.address} at {self.at:%Y-%m-%d %H:%M:%S}"


class Heartbeat(models.Model):
    """A named moment something proved it was alive, one row per name: `/readyz` writes "web"
    on each probe, which proves a write can commit."""

    name = models.CharField(max_length=60, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class SharedVolume(models.Model):
    """The data directory every host shares (dataset files, trained versions, Triton's
    repository), as the first role to start on it recorded it: one row. Each role checks at
    start that its DATA_DIR holds the same volume, at the same path (shaping_web.volume)."""

    key = models.CharField(max_length=20, primary_key=True, default="shared")
    volume_id = models.CharField(max_length=36)
    path = models.CharField(max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"volume {self.volume_id} at {self.path}"

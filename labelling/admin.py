"""Admin for every model, plus file import (all or nothing), rubric versioning, dataset
freezing and API tokens.

One module (over 500 lines): Django's admin registers every model of the app in
one place, and each ModelAdmin only calls the domain packages' services.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from labelling.access import roles, tokens
from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.importers import ImportFailed, import_size_check, import_text
from labelling.catalogue.schemas import RubricIn
from labelling.datasets import selectors as dataset_selectors
from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.models import (
    ApiToken,
    Assignment,
    Campaign,
    CampaignRound,
    Character,
    Criterion,
    CriterionScore,
    DatasetVersion,
    Generation,
    GeneratorVersion,
    Group,
    Judgment,
    PipelineRun,
    Producer,
    Prompt,
    PromptSet,
    Rubric,
    RunShard,
)
from labelling.records import services as record_services
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.generators import services as generator_services
from shaping_core import rules, scoring


def _admin_role_required(request: HttpRequest) -> bool:
    """The admin site's one door, for every page of it (custom views included, through
    `admin_view`): an active staff user in the admin role. A staff user without the role (one
    moved to reviewer keeps no staff status, see roles.py, but a hand-made one may) sees none."""
    user = request.user
    return user.is_active and user.is_staff and roles.is_admin(user)


admin.site.has_permission = _admin_role_required


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL, YAML or JSON: characters, rubrics, prompt sets, prompts, groups.")
    prompt_set = forms.SlugField(
        required=False,
        help_text="For a JSONL of bare prompts: the slug of the prompt set they join.",
    )


class ImportMixin:
    """Adds an "Import file" page to a changelist."""

    change_list_template = "admin/labelling/change_list_with_import.html"

    def get_urls(self):
        opts = self.model._meta
        extra = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name=f"{opts.app_label}_{opts.model_name}_import",
            )
        ]
        return extra + super().get_urls()

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        form = ImportForm(request.POST or None, request.FILES or None)
        problems = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                import_size_check(upload.name, upload.size)  # before reading it
                text = upload.read().decode("utf-8")
                summary = import_text(upload.name, text, default_prompt_set=form.cleaned_data["prompt_set"] or None)
            except UnicodeDecodeError:
                problems = [f"{upload.name}: not UTF-8 text"]
            except ImportFailed as exc:
                problems = [str(p) for p in exc.problems]
            else:
                self.message_user(request, f"{upload.name}: {summary}", messages.SUCCESS)
                opts = self.model._meta
                return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import file",
            "form": form,
            "problems": problems,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labelling/import.html", context)


class CharacterForm(forms.ModelForm):
    """A character as the admin edits it: a new portrait is checked (file size, pixels, readable)
    before anything is saved."""

    def clean_portrait(self):
        portrait = self.cleaned_data.get("portrait")
        if isinstance(portrait, UploadedFile):
            catalogue_services.portrait_size_check(portrait.size)  # before reading it
            catalogue_services.portrait_open(portrait.read())
            portrait.seek(0)
        return portrait


@admin.register(Character)
class CharacterAdmin(ImportMixin, admin.ModelAdmin):
    form = CharacterForm
    list_display = ["name", "slug", "thumbnail", "updated_at"]
    search_fields = ["name", "slug", "persona"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["thumbnail"]

    @admin.display(description="portrait")
    def thumbnail(self, obj: Character) -> str:
        if not obj.portrait_thumbnail:
            return "—"
        return format_html('<img src="{}" alt="" height="48">', obj.portrait_thumbnail.url)

    def save_model(self, request, obj, form, change):
        portrait = form.cleaned_data.get("portrait")
        fresh_upload = "portrait" in form.changed_data and portrait
        if fresh_upload:
            obj.portrait = None  # stored (with its thumbnail) by the service below
        super().save_model(request, obj, form, change)
        if fresh_upload:
            catalogue_services.character_set_portrait(character=obj, filename=portrait.name, content=portrait.read())


CRITERION_FIELDS = ["order", "key", "description", "scale_min", "scale_max", "levels", "weight", "rule"]


class CriterionForm(forms.ModelForm):
    """A criterion as the admin edits it; a rule is checked as imports and the API check it."""

    class Meta:
        model = Criterion
        fields = CRITERION_FIELDS

    def clean_rule(self):
        rule = self.cleaned_data.get("rule")
        if rule is not None:
            try:
                rules.check_rule(rule)
            except rules.RuleInvalid as exc:
                raise ValidationError(str(exc)) from None
        return rule


class CriterionInline(admin.TabularInline):
    model = Criterion
    form = CriterionForm
    extra = 0
    fields = CRITERION_FIELDS

    def has_change_permission(self, request, obj=None):
        return obj is None or not obj.is_frozen()

    has_add_permission = has_change_permission
    has_delete_permission = has_change_permission


@admin.register(Rubric)
class RubricAdmin(ImportMixin, admin.ModelAdmin):
    list_display = ["slug", "version", "name", "frozen", "created_at"]
    list_filter = ["slug"]
    search_fields = ["slug", "name"]
    inlines = [CriterionInline]
    readonly_fields = ["version", "parent"]
    actions = ["new_version"]

    @admin.display(boolean=True, description="frozen (has judgments)")
    def frozen(self, obj: Rubric) -> bool:
        return obj.is_frozen()

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_frozen():
            return ["slug", "version", "name", "description", "parent"]
        return self.readonly_fields

    @admin.action(description="Copy as a new, editable version")
    @transaction.atomic
    def new_version(self, request, queryset):
        for rubric in queryset:
            latest = catalogue_selectors.rubric_latest(rubric.slug)
            spec = RubricIn.model_validate({k: v for k, v in rubric.as_spec().items() if k != "version"})
            created = catalogue_services.rubric_create(data=spec, parent=latest)
            self.message_user(request, f"created {created.label} from {rubric.label}", messages.SUCCESS)


class PromptInline(admin.TabularInline):
    model = Prompt
    extra = 0
    fields = ["order", "external_id", "messages", "metadata"]


@admin.register(PromptSet)
class PromptSetAdmin(ImportMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "prompt_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PromptInline]

    @admin.display(description="prompts")
    def prompt_count(self, obj: PromptSet) -> int:
        return obj.prompts.count()


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["__str__", "preview", "order"]
    list_filter = ["prompt_set"]
    search_fields = ["external_id"]


@admin.register(Producer)
class ProducerAdmin(admin.ModelAdmin):
    list_display = ["__str__", "backend", "model_name", "model_version", "generator", "created_at"]
    list_filter = ["backend"]
    readonly_fields = ["key", "generator"]


@admin.register(GeneratorVersion)
class GeneratorVersionAdmin(admin.ModelAdmin):
    """Versions of the generator and their lineage. Which one is current changes only through
    the action (one atomic swap), never by editing a row."""

    list_display = ["__str__", "number", "parent", "method", "dataset_version", "status", "is_current", "created_at"]
    list_filter = ["model_name", "status", "method"]
    list_select_related = ["parent", "dataset_version"]
    actions = ["make_current", "make_current_anyway", "retire"]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["is_current", "created_at", "updated_at"]
        return [*fixed, "model_name", "number", "parent", "weights_sha256"] if obj else fixed

    @admin.action(description="Make the selected version current (or roll back to it)")
    def make_current(self, request, queryset, *, confirmed: bool = False):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to make current.", messages.ERROR)
            return
        unconfirmed = evaluation_selectors.needs_confirmation(queryset.get())
        if unconfirmed and not confirmed:
            self.message_user(
                request,
                f'{unconfirmed}. Choose "Make current although not marked better" to confirm.',
                messages.WARNING,
            )
            return
        try:
            version = generator_services.generator_version_make_current(version=queryset.get())
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        self.message_user(request, f"{version} is current.", messages.SUCCESS)

    @admin.action(description="Make current although not marked better than its parent (confirm)")
    def make_current_anyway(self, request, queryset):
        self.make_current(request, queryset, confirmed=True)

    @admin.action(description="Retire the selected versions (runs pinned to them fail)")
    def retire(self, request, queryset):
        for version in queryset:
            try:
                generator_services.generator_version_retire(version=version)
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            else:
                self.message_user(request, f"{version} retired.", messages.SUCCESS)


class RunShardInline(admin.TabularInline):
    """A run's parts (PIPELINE_SHARDS): which are at work, taken over (execution) or done; the
    worker's to write, not an editor's."""

    model = RunShard
    verbose_name, verbose_name_plural = "part", "parts"
    extra = 0
    can_delete = False
    fields = ["index", "status", "execution", "heartbeat_at", "done_items", "failed_items"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    inlines = [RunShardInline]
    list_display = [
        "id",
        "kind",
        "status",
        "character",
        "prompt_set",
        "rubric",
        "done_items",
        "failed_items",
        "total_items",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    # A run's lifecycle belongs to its services (start, cancel, resume on the run page) and
    # to the worker executing it: edited here, a status or a counter would race the worker.
    readonly_fields = [
        "status",
        "total_items",
        "done_items",
        "failed_items",
        "errors",
        "cancel_requested",
        "execution",
        "heartbeat_at",
        "created_at",
        "started_at",
        "finished_at",
    ]
    raw_id_fields = ["source_run", "created_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs start from /runs/new, the API or start_run, which queue them


class GenerationInline(admin.TabularInline):
    model = Generation
    extra = 0
    fields = ["index", "revision", "source", "text", "think_valid", "finish_reason"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "character", "run", "size", "review_count", "overlap_target"]
    list_filter = ["character", "run__kind"]
    raw_id_fields = ["run", "prompt"]
    inlines = [GenerationInline]


class FinishReasonFilter(admin.SimpleListFilter):
    """The finish reasons stored, with the blank one (an import records none) named."""

    title = "finish reason"
    parameter_name = "finish_reason"

    def lookups(self, request, model_admin):
        reasons = Generation.objects.order_by().values_list("finish_reason", flat=True).distinct()
        return [(reason or "-", reason or "(none recorded)") for reason in sorted(reasons)]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(finish_reason="" if value == "-" else value)


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "group",
        "index",
        "revision",
        "source",
        "think_valid",
        "finish_reason",
        "created_at",
    ]
    list_filter = ["source", "think_valid", FinishReasonFilter]
    search_fields = ["text"]
    raw_id_fields = ["group", "parent", "run", "producer", "author"]


class CriterionScoreFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        """The edited scores must still fit the rubric, checked as every other writer checks them."""
        super().clean()
        scores = {
            form.instance.criterion.key: form.cleaned_data.get("score", form.instance.score)
            for form in self.forms
            if form.instance.criterion_id
        }
        try:
            scoring.check(self.instance.rubric.criteria.all(), scores)
        except scoring.ScoresInvalid as exc:
            raise ValidationError(exc.message) from None


class CriterionScoreInline(admin.TabularInline):
    model = CriterionScore
    formset = CriterionScoreFormSet
    extra = 0
    max_num = 0  # the rubric decides which criteria are scored: scores are edited, not added
    can_delete = False
    fields = ["criterion", "score"]
    readonly_fields = ["criterion"]


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    """Scores, rationale, rank and flag can be corrected here; the overall score and the group's
    place in the review queue are recomputed by the same service the pipelines and the review
    use. Judgments are made by the judge and reviewers, not added here."""

    list_display = [
        "id",
        "generation",
        "rubric",
        "source",
        "status",
        "overall",
        "reviewer",
        "created_at",
    ]
    list_filter = ["source", "status", "rubric"]
    fields = [
        "generation",
        "rubric",
        "source",
        "status",
        "overall",
        "rationale",
        "rank",
        "flagged",
        "reviewer",
        "producer",
        "run",
        "raw_output",
        "error",
    ]
    readonly_fields = [
        "generation",
        "rubric",
        "source",
        "status",
        "overall",
        "reviewer",
        "producer",
        "run",
        "raw_output",
        "error",
    ]
    inlines = [CriterionScoreInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        record_services.judgment_rescore(judgment=form.instance)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "group", "reviewer", "status", "leased_until", "completed_at"]
    list_filter = ["status"]
    raw_id_fields = ["group", "reviewer"]


class DatasetBuildForm(forms.Form):
    dataset = forms.SlugField(max_length=80, help_text="The dataset's name; versions are numbered within it.")
    kind = forms.ChoiceField(choices=DatasetVersion.Kind.choices)
    filter = forms.JSONField(
        initial=dict,
        required=False,
        help_text='e.g. {"character": "aria", "rubric": "aria-voice", "min_human_reviews": 1}. '
        "Fields: character, rubric, rubric_version, runs, model_version, generator_version, created_after, "
        "created_before, min_human_reviews, exclude_flagged, min_margin, held_out (a share of prompts, "
        "0 up to 1, kept out of the version for evaluation).",
    )


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "kind", "row_count", "short_sha", "created_at", "download_link", "rows_link"]
    list_filter = ["kind", "dataset"]
    # The file as a link to the checked download (the file itself is not served under /media/).
    fields = readonly_fields = [
        "file_link" if f.name == "file" else f.name for f in DatasetVersion._meta.fields if f.name != "id"
    ] + ["rows_link"]
    change_list_template = "admin/labelling/datasetversion_change_list.html"
    actions = ["compare_versions"]

    def has_add_permission(self, request):
        return False  # versions are frozen by the dataset builder, never typed in

    def has_change_permission(self, request, obj=None):
        # A frozen version is read, never edited: its page offers no Save.
        return super().has_change_permission(request, obj) and not (obj is not None and obj.sha256)

    def has_delete_permission(self, request, obj=None):
        # A frozen version stays: trained versions and evaluations name it.
        return False if obj is None or obj.sha256 else super().has_delete_permission(request, obj)

    @admin.display(description="file")
    def file_link(self, obj: DatasetVersion) -> str:
        if not obj.file:
            return "—"
        url = reverse("admin:labelling_datasetversion_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.file.name.rpartition("/")[2])

    @admin.display(description="rows")
    def rows_link(self, obj: DatasetVersion) -> str:
        return format_html(
            '<a href="{}">preview</a> · <a href="{}">explore</a>',
            reverse("dataset_preview", args=[obj.pk]),
            reverse("explorer_dataset", args=[obj.pk]),
        )

    @admin.display(description="sha256")
    def short_sha(self, obj: DatasetVersion) -> str:
        return obj.sha256[:12]

    @admin.display(description="file")
    def download_link(self, obj: DatasetVersion) -> str:
        url = reverse("admin:labelling_datasetversion_download", args=[obj.pk])
        return format_html('<a href="{}">download</a>', url)

    def get_urls(self):
        extra = [
            path("build/", self.admin_site.admin_view(self.build_view), name="labelling_datasetversion_build"),
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="labelling_datasetversion_download",
            ),
        ]
        return extra + super().get_urls()

    def build_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        form = DatasetBuildForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                version = dataset_services.dataset_build(
                    dataset=form.cleaned_data["dataset"],
                    kind=form.cleaned_data["kind"],
                    filter=form.cleaned_data["filter"] or {},
                    created_by=request.user,
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, "; ".join(errors))
            else:
                self.message_user(
                    request,
                    f"Froze {version}: {version.row_count} rows, sha256 {version.sha256[:12]}",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:labelling_datasetversion_change", args=[version.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Freeze a dataset version",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labelling/dataset_build.html", context)

    def download_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        version = DatasetVersion.objects.filter(pk=pk).first()
        if version is None:
            return HttpResponse("no such dataset version", status=404, content_type="text/plain")
        try:
            storage.dataset_verify(version)
        except storage.DatasetCorrupt as exc:
            self.message_user(request, f"Not served: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:labelling_datasetversion_changelist"))
        response = StreamingHttpResponse(storage.dataset_stream(version), content_type="application/x-ndjson")
        response["Content-Disposition"] = (
            f'attachment; filename="{version.dataset}-v{version.number}-{version.kind}.jsonl"'
        )
        response["X-Content-SHA256"] = version.sha256
        return response

    @admin.action(description="Compare two selected versions (older → newer)")
    def compare_versions(self, request, queryset):
        if queryset.count() != 2:
            self.message_user(request, "Select exactly two versions to compare.", messages.WARNING)
            return None
        old, new = sorted(queryset, key=lambda v: (v.created_at, v.pk))
        try:
            diff = dataset_selectors.dataset_compare(old, new)
        except storage.DatasetCorrupt as exc:
            self.message_user(request, f"Cannot compare: {exc}", messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{old} → {new}",
            "old": old,
            "new": new,
            "diff": diff,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labelling/dataset_compare.html", context)


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here or with `manage.py create_token`; the token is shown once."""

    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    actions = ["revoke"]
    form = ApiTokenForm

    def get_readonly_fields(self, request, obj=None):
        return ["prefix", "created_at", "last_used_at", "revoked_at"] if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        row, token = tokens.token_create(user=obj.user, name=obj.name)
        obj.pk, obj.prefix, obj.digest = row.pk, row.prefix, row.digest
        self.message_user(
            request,
            f"Token for {row.user}: {token} (copy it now: it is stored hashed and cannot be shown again)",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for row in queryset:
            tokens.token_revoke(token=row)
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)


class CampaignRoundInline(admin.TabularInline):
    model = CampaignRound
    fields = readonly_fields = [
        "number",
        "step",
        "outcome",
        "parent_version",
        "generate_run",
        "train_run",
        "evaluation",
        "reason",
    ]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    """Read here; created and moved by the campaign's commands, API and page (its checks live there)."""

    list_display = ["slug", "character", "rubric", "method", "trigger", "rounds_planned", "status"]
    list_filter = ["status", "trigger"]
    fields = readonly_fields = [f.name for f in Campaign._meta.fields if f.name != "id"]
    inlines = [CampaignRoundInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

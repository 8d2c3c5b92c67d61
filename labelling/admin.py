"""Admin for every model, plus file import (all or nothing) and rubric versioning."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from labelling import services
from labelling.importers import ImportFailed, import_text
from labelling.models import (
    Assignment,
    Character,
    Criterion,
    CriterionScore,
    DatasetVersion,
    Generation,
    Group,
    Judgment,
    ModelVersion,
    PipelineRun,
    Prompt,
    PromptSet,
    Rubric,
)
from labelling.schemas import RubricIn


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL, YAML or JSON: characters, rubrics, prompt sets, prompts, groups."
    )
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
                text = upload.read().decode("utf-8")
                summary = import_text(
                    upload.name, text, default_prompt_set=form.cleaned_data["prompt_set"] or None
                )
            except UnicodeDecodeError:
                problems = [f"{upload.name}: not UTF-8 text"]
            except ImportFailed as exc:
                problems = [str(p) for p in exc.problems]
            else:
                self.message_user(request, f"{upload.name}: {summary}", messages.SUCCESS)
                opts = self.model._meta
                return HttpResponseRedirect(
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import file",
            "form": form,
            "problems": problems,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labelling/import.html", context)


@admin.register(Character)
class CharacterAdmin(ImportMixin, admin.ModelAdmin):
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
            services.character_set_portrait(
                character=obj, filename=portrait.name, content=portrait.read()
            )


class CriterionInline(admin.TabularInline):
    model = Criterion
    extra = 0
    fields = ["order", "key", "description", "scale_min", "scale_max", "levels", "weight"]

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
            latest = services.rubric_latest(rubric.slug)
            spec = RubricIn.model_validate(
                {k: v for k, v in rubric.as_spec().items() if k != "version"}
            )
            created = services.rubric_create(data=spec, parent=latest)
            self.message_user(
                request, f"created {created.label} from {rubric.label}", messages.SUCCESS
            )


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


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "backend", "model_name", "model_version", "created_at"]
    list_filter = ["backend"]
    readonly_fields = ["key"]


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
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
    readonly_fields = ["created_at", "started_at", "finished_at", "errors"]
    raw_id_fields = ["source_run", "created_by"]


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
    list_filter = ["source", "think_valid", "finish_reason"]
    search_fields = ["text"]
    raw_id_fields = ["group", "parent", "run", "model_version", "author"]


class CriterionScoreInline(admin.TabularInline):
    model = CriterionScore
    extra = 0
    raw_id_fields = ["criterion"]


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
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
    raw_id_fields = ["generation", "model_version", "reviewer", "run"]
    inlines = [CriterionScoreInline]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "group", "reviewer", "status", "leased_until", "completed_at"]
    list_filter = ["status"]
    raw_id_fields = ["group", "reviewer"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "kind", "row_count", "sha256", "created_at"]
    list_filter = ["kind", "dataset"]
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]

    def has_add_permission(self, request):
        return False  # versions are frozen by the dataset builder, never typed in

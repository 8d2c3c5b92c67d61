"""A rubric used by a judgment is frozen: editing it makes a new version."""

import pytest
from django.core.exceptions import ValidationError

from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import RubricIn
from labelling.models import Judgment, Rubric

SPEC = {
    "slug": "tone",
    "name": "Tone",
    "criteria": [
        {"key": "warmth", "description": "Warm?", "scale_min": 1, "scale_max": 5},
        {"key": "clarity", "description": "Clear?", "scale_min": 1, "scale_max": 3},
    ],
}


def _edited(**changes):
    spec = {**SPEC, **changes}
    return RubricIn.model_validate(spec)


def test_an_unused_rubric_is_edited_in_place(db):
    rubric = catalogue_services.rubric_create(data=RubricIn.model_validate(SPEC))
    edited = catalogue_services.rubric_update(rubric=rubric, data=_edited(name="Tone of voice"))
    assert edited.pk == rubric.pk and edited.version == 1
    assert Rubric.objects.get(pk=rubric.pk).name == "Tone of voice"


def test_a_rubric_with_judgments_is_frozen_and_an_edit_makes_a_new_version(demo):
    v1 = Rubric.objects.get(slug="aria-voice")
    assert v1.is_frozen()
    scores_before = list(Judgment.objects.filter(rubric=v1).values_list("id", "overall"))
    spec = v1.as_spec()
    spec.pop("version")
    spec["criteria"][0]["description"] = "Sounds like Aria."
    v2 = catalogue_services.rubric_update(rubric=v1, data=RubricIn.model_validate(spec))
    assert (v2.slug, v2.version, v2.parent_id) == ("aria-voice", 2, v1.pk)
    assert v2.criteria.get(key="in-character").description == "Sounds like Aria."
    v1.refresh_from_db()
    assert v1.criteria.get(key="in-character").description.startswith("Stays in Aria's persona")
    assert list(Judgment.objects.filter(rubric=v1).values_list("id", "overall")) == scores_before
    assert not v2.is_frozen()


def test_an_edit_that_changes_nothing_makes_no_version(demo):
    v1 = Rubric.objects.get(slug="aria-voice")
    spec = v1.as_spec()
    spec.pop("version")
    assert catalogue_services.rubric_update(rubric=v1, data=RubricIn.model_validate(spec)) == v1
    assert Rubric.objects.filter(slug="aria-voice").count() == 1


def test_a_rubric_slug_cannot_change(db):
    rubric = catalogue_services.rubric_create(data=RubricIn.model_validate(SPEC))
    with pytest.raises(ValidationError):
        catalogue_services.rubric_update(rubric=rubric, data=_edited(slug="other"))


def test_a_rubric_needs_a_criterion_with_an_ordered_scale():
    with pytest.raises(Exception, match="at least 1"):
        RubricIn.model_validate({**SPEC, "criteria": []})
    with pytest.raises(Exception, match="must be below"):
        RubricIn.model_validate(
            {**SPEC, "criteria": [{"key": "k", "description": "d", "scale_min": 3, "scale_max": 3}]}
        )

"""Two workers freezing the same dataset at once: each lands whole, with its own number and
its own file, and nothing half-written is left behind."""

import pytest

from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.models import DatasetVersion
from tests.review.test_races import at_once

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_builds_of_one_dataset_at_once_each_land_whole(world, media):
    def build():
        return dataset_services.dataset_build(dataset="mira", kind="grpo", filter={"rubric": "voice"})

    for _ in range(3):
        results = at_once(build, build)
        assert all(isinstance(r, DatasetVersion) for r in results), results
    versions = list(DatasetVersion.objects.filter(dataset="mira").order_by("number"))
    assert [v.number for v in versions] == [1, 2, 3, 4, 5, 6]
    assert len({v.file.name for v in versions}) == 6
    assert len({v.sha256 for v in versions}) == 1  # the same data, the same bytes, six times
    for version in versions:
        storage.dataset_verify(version)
    leftovers = [p.name for p in (media / "datasets" / "mira").iterdir() if p.name.startswith(".")]
    assert leftovers == []

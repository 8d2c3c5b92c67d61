"""Every role checks at start that DATA_DIR is the deployment's shared volume: a directory it
can write to, the volume the database records, at the path every host mounts it at."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from labelling.models import SharedVolume
from shaping_web.volume import MARKER, VolumeProblem, volume_check

pytestmark = pytest.mark.django_db


def test_the_first_role_records_the_volume_and_the_next_finds_it(tmp_path):
    volume = volume_check(tmp_path)
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker == {"id": volume, "path": str(tmp_path.resolve())}
    assert SharedVolume.objects.get().volume_id == volume
    assert volume_check(tmp_path) == volume  # a second host on the same volume
    assert [p.name for p in tmp_path.iterdir()] == [MARKER]  # the write check left nothing behind


def test_a_host_that_mounted_nothing_is_refused_saying_where_to_mount(tmp_path):
    shared, local = tmp_path / "shared", tmp_path / "local"
    shared.mkdir(), local.mkdir()
    volume = volume_check(shared)
    with pytest.raises(VolumeProblem, match=f"holds no {MARKER}.*uses shared volume {volume}.*mount it at {shared}"):
        volume_check(local)
    assert not (local / MARKER).exists()  # refused, nothing written


def test_the_volume_mounted_at_another_path_is_refused(tmp_path):
    first, elsewhere = tmp_path / "srv-data", tmp_path / "mnt-data"
    first.mkdir()
    volume_check(first)
    shutil.copytree(first, elsewhere)  # the same volume, mounted elsewhere on another host
    with pytest.raises(VolumeProblem, match=f"at {elsewhere} here, but was first used at {first}"):
        volume_check(elsewhere)


def test_another_volume_than_the_databases_is_refused(tmp_path):
    volume_check(tmp_path)
    SharedVolume.objects.update(volume_id="0" * 36)  # the database was set up on another volume
    with pytest.raises(VolumeProblem, match=f"but the database uses {'0' * 36}"):
        volume_check(tmp_path)


def test_a_file_where_the_volume_should_be_is_refused(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    with pytest.raises(VolumeProblem, match="is not a directory"):
        volume_check(tmp_path / "data")


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_saying_what_to_mount(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    volume_check(shared)
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "manage.py", "check_volume"],
        env={**os.environ, "DATA_DIR": str(tmp_path / "empty"), **_database_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and f"mount it at {shared}" in done.stderr, done.stderr


def _database_env() -> dict:
    from bench.faults import worker_env

    return {k: v for k, v in worker_env("127.0.0.1:1").items() if k in ("DATABASE_URL", "SQLITE_PATH")}

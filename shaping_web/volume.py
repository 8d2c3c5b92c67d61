"""The shared volume: the data directory every host of a deployment shares.

The web processes write dataset files and portraits there, the training host writes trained
versions and Triton's generated repository, and the Triton host loads versions from it by
absolute path (each version folder names its ONNX folder). So every role must see the same
directory, writable, at the same path. A host that mounted nothing (an empty local folder), or
mounted the volume elsewhere, would fail later and far from the cause: a dataset download that
404s on another web process, a version that Triton cannot load.

The first role to start writes a marker into DATA_DIR (`.shaping-volume.json`: an id and the
path it was found at) and records it in the database (`SharedVolume`, one row). Every role
checks both at start (`manage.py check_volume`, run by the container's entrypoint before each
role) and refuses, saying what to mount where.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

MARKER = ".shaping-volume.json"


class VolumeProblem(Exception):
    """This host's DATA_DIR is not the shared volume as the deployment needs it."""


def volume_check(data_dir: str | Path) -> str:
    """The id of the shared volume at `data_dir`, once it is checked: a directory this process
    can write to, the volume the database records (the first check records it), mounted at the
    path it was first used at. Raises VolumeProblem saying what is wrong and what to do."""
    from labelling.models import SharedVolume

    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise VolumeProblem(f"DATA_DIR {data_dir} is not a directory: mount the shared volume there")
    try:
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-check-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        raise VolumeProblem(
            f"DATA_DIR {data_dir} is not writable by this process ({exc.strerror}): every role writes to the "
            "shared volume (dataset files, trained versions, Triton's repository)"
        ) from None
    marker = data_dir / MARKER
    recorded = SharedVolume.objects.filter(key="shared").first()
    if recorded is not None and not marker.exists():
        raise VolumeProblem(
            f"DATA_DIR {data_dir} holds no {MARKER}, while the database uses shared volume {recorded.volume_id} "
            f"(first used at {recorded.path}): this host has not mounted it; mount it at {recorded.path}"
        )
    mine = _marker(marker, data_dir)
    if mine["path"] != str(data_dir):
        raise VolumeProblem(
            f"the shared volume is at {data_dir} here, but was first used at {mine['path']}: trained versions and "
            f"Triton's repository name absolute paths, so every host must mount it at {mine['path']}"
        )
    recorded, _ = SharedVolume.objects.get_or_create(
        key="shared", defaults={"volume_id": mine["id"], "path": mine["path"]}
    )
    if recorded.volume_id != mine["id"]:
        raise VolumeProblem(
            f"DATA_DIR {data_dir} holds shared volume {mine['id']}, but the database uses {recorded.volume_id} "
            f"(first used at {recorded.path}): mount that one here"
        )
    return recorded.volume_id


def _marker(marker: Path, data_dir: Path) -> dict:
    """The volume's marker, written first if there is none. Two hosts starting at once on one
    volume: a hard link creates it whole or not at all, and the loser reads the winner's."""
    if not marker.exists():
        written = {"id": str(uuid.uuid4()), "path": str(data_dir)}
        with tempfile.NamedTemporaryFile("w", dir=data_dir, prefix=".marker-", delete=False) as draft:
            json.dump(written, draft)
        try:
            os.link(draft.name, marker)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(draft.name)
    for _ in range(50):
        try:
            found = json.loads(marker.read_text())
            if isinstance(found, dict) and {"id", "path"} <= set(found):
                return found
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise VolumeProblem(f"{marker} is not a volume marker this app wrote: move it away and start again")

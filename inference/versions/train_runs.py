"""Executing a train run: the trainer (`python -m inference.versions.training`, TRL) runs as a child
process of the worker; this side claims the run, feeds the child its config, stores each logged
step, turns a cancel into the child's stop file, and hands the finished weights to
`inference.versions.export`, which makes them a served version.

A worker that dies takes its child with it (PR_SET_PDEATHSIG); the watchdog queues the run
again and the new child resumes from its last checkpoint. A worker whose claim was taken over
kills its child and writes nothing more.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connections

from inference import execution
from inference.versions import export as version_export
from labelling.datasets.storage import DatasetCorrupt, dataset_path, dataset_verify
from labelling.models import DatasetVersion, GeneratorVersion, PipelineRun
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.training import live as live_reviews
from labelling.versions.training import services as training_services

log = logging.getLogger(__name__)

STDERR_TAIL = 3000
BROADCAST_EVERY_S = 0.5


class TrainFailed(Exception):
    """The train run cannot go on; its text is the reason the run and its version record."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def execute(run_id: int) -> str:
    with execution.run_claimed(run_id=run_id, stale_after_s=settings.RUN_STALE_AFTER_S) as claim:
        if claim is None:
            return "not claimed"
        mine = claim.execution
        version = GeneratorVersion.objects.get(train_run=claim.run)
        try:
            return _execute(claim.run, version, mine, claim.cancelled, claim.superseded)
        except execution.Superseded:
            log.warning("train run %s: execution %s was taken over; this worker stopped", run_id, mine)
            return "superseded"
        except TrainFailed as exc:
            log.warning("train run %s failed: %s", run_id, exc)
            return _fail(run_id, mine, version, exc.kind, str(exc))
        except Exception as exc:
            log.exception("train run %s crashed", run_id)
            return _fail(run_id, mine, version, type(exc).__name__, str(exc))


def _fail(run_id: int, mine: int, version: GeneratorVersion, kind: str, message: str) -> str:
    """The run fails with the reason, and so does its version; a worker whose claim was taken
    over meanwhile writes neither (the worker that took over owns both now)."""
    if not PipelineRun.objects.filter(pk=run_id, execution=mine).exists():
        return "superseded"
    execution.run_fail(run_id=run_id, execution=mine, error={"item": None, "error": kind, "message": message})
    training_services.version_status(version=version, status=GeneratorVersion.Status.FAILED, error=message)
    return "failed"


def _execute(run: PipelineRun, version: GeneratorVersion, mine: int, cancelled, superseded) -> str:
    training_services.version_status(version=version, status=GeneratorVersion.Status.TRAINING)
    root = training_services.version_root(version.model_name, version.number)
    work = root / "train"
    work.mkdir(parents=True, exist_ok=True)
    (work / "CANCEL").unlink(missing_ok=True)  # a resumed run starts without the last one's stop
    config_path = work / "config.json"
    config_path.write_text(json.dumps(_child_config(run, version, work), indent=2))
    finished = _train(run, mine, config_path, work, cancelled, superseded)
    if superseded.is_set():
        raise execution.Superseded(f"run {run.pk}: execution {mine} is no longer current")
    step, total = finished["step"], run.total_items
    if finished.get("stopped") == "cancelled":
        training_services.version_status(
            version=version,
            status=GeneratorVersion.Status.FAILED,
            error=f"cancelled at step {step} of {total}; resume run #{run.pk} to continue from its last checkpoint",
        )
        execution.run_finish(run_id=run.pk, execution=mine, done=step, cancelled=True)
        return "cancelled"
    execution.run_progress(run_id=run.pk, execution=mine, done=total)
    try:
        trainer = {k: finished[k] for k in ("device", "peak_gpu_memory_mb", "steps_per_s") if k in finished}
        version_export.export(version, Path(finished["hf_dir"]), trained_s=finished.get("seconds"), trainer=trainer)
    except version_export.ExportFailed as exc:
        raise TrainFailed("ExportFailed", str(exc)) from exc
    return execution.run_finish(run_id=run.pk, execution=mine, done=total).status


def _child_config(run: PipelineRun, version: GeneratorVersion, work: Path) -> dict:
    params = run.params
    dataset = DatasetVersion.objects.filter(pk=params.get("dataset_version")).first()
    if dataset is None:
        raise TrainFailed("DatasetMissing", f"dataset version {params.get('dataset')} no longer exists")
    try:
        dataset_verify(dataset)
    except DatasetCorrupt as exc:
        raise TrainFailed("DatasetCorrupt", str(exc)) from exc
    parent = version.parent
    if parent is None or parent.status not in (GeneratorVersion.Status.READY, GeneratorVersion.Status.RETIRED):
        raise TrainFailed("VersionUnavailable", f"the version trained from ({parent}) is not ready")
    return {
        "method": params["method"],
        "base_hf_dir": str(generator_selectors.generator_version_hf_dir(parent)),
        "output_dir": str(work),
        "dataset_path": str(dataset_path(dataset)),
        "dataset_kind": dataset.kind,
        "params": params["training"],
        "rubric": params.get("rubric_spec"),
        "triton_url": settings.TRITON_URL,
        "judge_concurrency": int(settings.PIPELINE_WORKERS),
        "device": settings.TRAIN_DEVICE,
        **(
            {"live_review": {**params["live_review"], "folder": str(work / "live")}}
            if params.get("live_review")
            else {}
        ),
    }


def trainer_command(config_path: Path) -> list[str]:
    """`python -m inference.versions.training CONFIG`, or through TRAIN_LAUNCH (e.g. `accelerate launch
    --multi_gpu --num_processes 4`) on a host with several accelerators."""
    launch = shlex.split(settings.TRAIN_LAUNCH)
    if launch:
        return [*launch, "-m", "inference.versions.training", str(config_path)]
    return [settings.TRAIN_PYTHON, "-m", "inference.versions.training", str(config_path)]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _train(run: PipelineRun, mine: int, config_path: Path, work: Path, cancelled, superseded) -> dict:
    """Run the child to its end; the `finished` event it sent. TrainFailed otherwise."""
    stderr_path = work / "trainer.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    with open(stderr_path, "ab") as stderr:
        child = subprocess.Popen(
            trainer_command(config_path),
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=settings.BASE_DIR,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the one thing it does is async-signal-safe
        )
    watcher = threading.Thread(target=_watch, args=(child, work, cancelled, superseded), daemon=True)
    watcher.start()
    finished: dict | None = None
    error: dict | None = None
    last_broadcast = 0.0
    last_step = 0  # the last step the trainer reported: a review request belongs to the next
    try:
        for line in child.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("train run %s: the trainer wrote a line that is not JSON: %.200r", run.pk, line)
                continue
            kind = event.get("event")
            if superseded.is_set():
                break
            if kind == "started":
                if event.get("resumed_from"):
                    training_services.train_resumed(run_id=run.pk, step=int(event["resumed_from"]))
                execution.run_progress(run_id=run.pk, execution=mine, done=event.get("resumed_from") or 0)
            elif kind == "step":
                last_step = int(event["step"])
                training_services.training_step_record(run_id=run.pk, step=int(event["step"]), metrics=event)
                now = time.monotonic()
                if now - last_broadcast >= BROADCAST_EVERY_S or event["step"] >= run.total_items:
                    execution.run_progress(run_id=run.pk, execution=mine, done=int(event["step"]))
                    last_broadcast = now
            elif kind == "review_request":
                _live_review_serve(run, event, work)
            elif kind == "live_review":
                live_reviews.live_review_record(
                    train_run_id=run.pk,
                    entry={k: event.get(k) for k in ("id", "groups", "sent", "human", "waited_s")}
                    | {"step": last_step + 1},
                )
            elif kind == "finished":
                finished = event
            elif kind == "error":
                error = event
    finally:
        if superseded.is_set() and child.poll() is None:
            child.kill()
        code = child.wait()
        child.stdout.close()
    if superseded.is_set():
        return {"step": 0}
    if error is not None:
        raise TrainFailed(error.get("error") or "TrainingError", error.get("message") or "the trainer failed")
    if finished is None or code != 0:
        tail = stderr_path.read_text(errors="replace")[-STDERR_TAIL:] if stderr_path.exists() else ""
        raise TrainFailed("TrainerExited", f"the trainer exited with code {code} before finishing:\n{tail}")
    return finished


def _live_review_serve(run: PipelineRun, event: dict, work: Path) -> None:
    """A step's groups for reviewers: served on a thread of its own (the trainer waits for the
    answer, the event loop goes on reading), the answer written whole into the live folder."""
    folder = work / "live"
    folder.mkdir(exist_ok=True)
    request = str(event.get("id", ""))
    if not request.replace("-", "").isalnum():
        log.warning("train run %s: a review request with a bad id %.80r", run.pk, request)
        return

    def serve() -> None:
        try:
            scored = live_reviews.live_review(
                train_run=run,
                request=request,
                groups=list(event.get("groups") or []),
                deadline_s=float(event.get("deadline_s") or 0),
            )
        except Exception:  # noqa: BLE001 - logged; the trainer goes on with the judge's scores
            log.exception("train run %s: review request %s failed", run.pk, request)
            scored = {}
        finally:
            connections.close_all()
        partial = folder / f".{request}.json"
        partial.write_text(json.dumps({"groups": scored}))
        partial.replace(folder / f"{request}.json")

    threading.Thread(target=serve, name=f"live-review-{run.pk}", daemon=True).start()


def _watch(child: subprocess.Popen, work: Path, cancelled, superseded) -> None:
    """A cancel becomes the child's stop file (it stops at its next step and keeps what it
    trained); a takeover kills it."""
    while child.poll() is None:
        if superseded.is_set():
            child.kill()
            return
        if cancelled.is_set():
            (work / "CANCEL").touch()
        time.sleep(0.2)


def train_params(method: str, params: dict, *, base_hf_dir=None) -> dict:
    """A train request's settings, resolved (inference.versions.training.config.resolve), once this
    install is known to be able to train it: on the embedded default (no REDIS_URL) the trainer
    runs under this host's `serve`, so a missing package refuses the request before anything is
    created. With Redis the training consumer may be another host's; its child says what is
    missing there."""
    from inference.versions.training.config import TRAIN_EXTRA, missing_trainer_modules, resolve
    from labelling.runs.executor import TrainerUnavailable

    if not settings.REDIS_URL:
        missing = missing_trainer_modules(settings.TRAIN_PYTHON)
        if missing:
            raise TrainerUnavailable(f"this install cannot train: {', '.join(missing)} missing; {TRAIN_EXTRA}")
    return resolve(method, params, base_hf_dir=base_hf_dir)

"""Training overhead and export time, measured in one run.

- overhead: a `train` run (GRPO on a grpo_prompts version, reward: a rule criterion, "says
  Aria") executed as the worker does (claim, the child process, every step stored, progress
  published) against the plain TRL script of bench/plain_grpo.py on the same prompts, model,
  reward and settings. Both are timed from the start of their process to the trained weights
  on disk (interpreter start, imports, model load, training, final save): steps/s of each and
  their ratio. Trials alternate between the two.
- export: seconds from the run's last logged step to the new version answering through the
  running tritonserver (final save, conversion, check generation, load beside version 1), and
  with --export-hf DIR the same conversion + check + load for another model's Hugging Face
  folder (the 0.6B-shaped model: `python -m inference.build_model --preset qwen3-0.6b-shape
  --keep-hf --output data/models/qwen3-0.6b-shape`, then pass its hf/).

    python bench/bench_train.py [--steps 40] [--trials 3] [--export-hf DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPTS = [f"Tell me about day {i} at the harbour." for i in range(16)]


def setup(data_dir: Path):
    os.environ.update(
        DATA_DIR=str(data_dir),
        HUEY_NAME="bench-train",
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
        INFERENCE_BACKEND="triton",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from inference.triton_server import TritonProcess, free_port
    from inference.versions import served as served_versions

    server = TritonProcess(
        data_dir / "triton",
        grpc_port=free_port(),
        metrics_port=free_port(),
        model_repository=served_versions.repository_sync(),
        explicit=True,
    ).start()
    from django.conf import settings

    settings.TRITON_URL = server.url
    return server


def dataset():
    """A grpo_prompts version of PROMPTS whose rubric rewards saying "Aria"."""
    import hashlib

    from django.conf import settings

    from labelling.catalogue import services as catalogue_services
    from labelling.catalogue.schemas import CriterionIn, RubricIn
    from labelling.models import DatasetVersion

    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="says-her-name",
            name="Says her name",
            criteria=[
                CriterionIn(
                    key="name",
                    description="names herself",
                    scale_min=0,
                    scale_max=1,
                    rule={"kind": "regex", "pattern": "Aria"},
                )
            ],
        )
    )
    path = Path(settings.MEDIA_ROOT) / "datasets" / "bench" / "v1-grpo_prompts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": [{"role": "user", "content": text}]}) + "\n"
            for i, text in enumerate(PROMPTS)
        )
    )
    return DatasetVersion.objects.create(
        dataset="bench",
        number=1,
        kind="grpo_prompts",
        row_count=len(PROMPTS),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        file=str(path.relative_to(settings.MEDIA_ROOT)),
        reward_policy={"rubric_spec": rubric.as_spec()},
    )


def product_trial(version, steps: int, params: dict | None = None) -> dict:
    from inference.versions import train_runs
    from labelling.models import GeneratorVersion, TrainingStep
    from labelling.versions.training import services as training_services

    run, _ = training_services.train_start(
        dataset_version=version, method="grpo", params={"steps": steps, **(params or {})}, enqueue=False
    )
    began = time.monotonic()
    status = train_runs.execute(run.pk)
    wall = time.monotonic() - began
    made = GeneratorVersion.objects.get(train_run=run)
    if status != "succeeded":
        raise SystemExit(f"the train run ended {status}: {made.error}")
    export = made.config["export"]
    steps_logged = list(TrainingStep.objects.filter(run=run).order_by("step"))
    last_step_to_ready = (made.updated_at - steps_logged[-1].logged_at).total_seconds()
    return {
        "train_wall_s": wall - export["total_s"],
        "first_reward": steps_logged[0].reward_mean,
        "last_reward": steps_logged[-1].reward_mean,
        "params": run.params["training"],
        "export": export,
        "last_step_to_ready_s": last_step_to_ready,
        "version": made.number,
    }


def plain_trial(version, params: dict, work: Path) -> dict:
    from labelling.datasets.storage import dataset_path
    from labelling.models import GeneratorVersion

    work.mkdir(parents=True, exist_ok=True)
    (work / "params.json").write_text(json.dumps(params))
    hf = GeneratorVersion.path(GeneratorVersion.objects.get(number=1).hf_dir)
    began = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "plain_grpo.py"),
            str(hf),
            str(dataset_path(version)),
            str(work / "out"),
            str(work / "params.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - began
    return {"train_wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


def _resolved(steps: int) -> dict:
    from inference.versions.training.config import resolve

    return resolve("grpo", {"steps": steps})


def export_other(hf_dir: Path) -> dict:
    """Convert + check + load another model's weights as a version, timed."""
    from inference.versions import export as version_export
    from labelling.models import GeneratorVersion

    number = GeneratorVersion.objects.order_by("-number").first().number + 1
    row = GeneratorVersion.objects.create(number=number, parent_id=1, method="sft", status="training")
    began = time.monotonic()
    version_export.export(row, hf_dir)
    return {"seconds": time.monotonic() - began, **GeneratorVersion.objects.get(pk=row.pk).config["export"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--export-hf", type=Path, help="also time the export of this Hugging Face folder")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    server = setup(data_dir)
    try:
        version = dataset()
        product, plain = [], []
        params = None
        for trial in range(args.trials):  # alternating which goes first: neither always gets a cold cache
            if trial % 2 == 0:
                product.append(product_trial(version, args.steps))
                params = product[-1]["params"]
            plain.append(plain_trial(version, params or _resolved(args.steps), data_dir / f"plain-{trial}"))
            if trial % 2 == 1:
                product.append(product_trial(version, args.steps))
        p_wall = statistics.median(t["train_wall_s"] for t in product)
        b_wall = statistics.median(t["train_wall_s"] for t in plain)
        print(
            f"\nGRPO, shipped tiny model, {args.steps} steps, {len(PROMPTS)} prompts, {args.trials} trials each (median)"
        )
        print(f"{'':34} {'wall s':>8} {'steps/s':>8} {'reward first -> last':>22}")
        for label, trials, wall in (
            ("plain TRL script (baseline)", plain, b_wall),
            ("train run (product)", product, p_wall),
        ):
            last = trials[-1]
            print(
                f"{label:34} {wall:8.1f} {args.steps / wall:8.2f} "
                f"{last['first_reward']:>10.3f} -> {last['last_reward']:.3f}"
            )
        print(f"{'product / baseline steps/s':34} {b_wall / p_wall:8.1%}")
        print("\nexport of the trained tiny model (per trial): last step -> answering in Triton")
        for t in product:
            e = t["export"]
            print(
                f"  v{t['version']}: {t['last_step_to_ready_s']:.1f} s "
                f"(convert {e['convert_s']} s, check {e['check_s']} s, load + check in Triton {e['serve_s']} s)"
            )
        if args.export_hf:
            e = export_other(args.export_hf)
            print(
                f"\nexport of {args.export_hf}: {e['seconds']:.1f} s "
                f"(convert {e['convert_s']} s, check {e['check_s']} s, load + check in Triton {e['serve_s']} s)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()

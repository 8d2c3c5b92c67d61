"""One shaping round on the demo model, measured: the documented loop, on the CPU.

    python bench/bench_round.py [--steps 40] [--held-out 0.4] [--k 4] [--compare-sampling]

What `make run` starts (migrate, prepare_model, seed_demo, serve: web, huey, the training
consumer and tritonserver, all on the demo model, SmolLM2-135M-Instruct), driven through the JSON
API as a script would drive it:

1. generate + judge: G completions of every prompt of aria-everyday with the current version (v1);
2. a grpo_prompts dataset version of that run, holding a share of the prompts out;
3. GRPO with the real model's defaults (LoRA r=16 on all linear layers, lr 2e-4, 8 rollouts of
   at most 96 tokens sampled as the app samples), the reward the aria-voice rubric: three rule
   criteria (concision, no-loops, signed) and the judge's criteria (in-character, helpfulness),
   the judge being v1's own weights;
4. an evaluation of v2 against v1 on the held-out prompts, k completions each, same seeds.

The baseline is v1 in the same run. Printed: wall time per stage, the mean reward per criterion
over the training steps (first and last fifth), the evaluation's win rate with its interval and
sign test, the per-criterion differences, the verdict on rule criteria alone and on the judge's
alone (the judge shares v1's weights), how far v2's token distribution moved from v1's (KL per
token, the figure bench_demo_model.py gives for int4), and held-out prompts with v1's and v2's
answers side by side. With --compare-sampling a second round trains from the same dataset with
TRL's default sampling (temperature 1.0 over the whole vocabulary) and is evaluated the same way.
Everything is also written to WORK/round.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FINISHED = ("succeeded", "partial", "failed", "cancelled")


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base.rstrip("/") + "/api", token

    def __call__(self, method: str, path: str, body=None, **headers):
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - loopback
                data = response.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{method} {path}: {error.code} {error.read().decode()}") from None

    def finished(self, run: dict, every: float = 5.0) -> dict:
        while run["status"] not in FINISHED:
            time.sleep(every)
            run = self("GET", f"/runs/{run['id']}")
        if run["status"] != "succeeded":
            raise SystemExit(f"run {run['id']} {run['status']}: {run['errors'][:3]}")
        return run


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(env: dict, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:  # noqa: S310
                if json.loads(r.read()).get("ok"):
                    return process
        except (OSError, ValueError):
            pass
        if process.poll() is not None:
            break
        time.sleep(1)
    raise SystemExit(f"the app did not start:\n{log.read_text()[-3000:]}")


def demo_up(work: Path, models_dir: Path, huey_name: str, seconds: dict | None = None) -> tuple[subprocess.Popen, Api]:
    """What `make run` starts, in `work` on the embedded defaults: migrate, prepare_model,
    seed_demo, an admin's token, `serve`; this process set up for Django on the same data (so a
    bench can read and write it directly). The server's process and the API as the admin."""
    env = {
        **os.environ,
        "DATA_DIR": str(work),
        "MODELS_DIR": str(models_dir),
        "HUEY_NAME": huey_name,
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    os.environ.update({k: env[k] for k in ("DATA_DIR", "MODELS_DIR", "HUEY_NAME", "DATABASE_URL")})
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "shaping_web.settings"
    seconds = {} if seconds is None else seconds
    began = time.monotonic()
    manage(env, "migrate", "--noinput", "-v", "0")
    print(manage(env, "prepare_model").strip().splitlines()[-1])
    manage(env, "seed_demo")
    seconds["set_up"] = time.monotonic() - began
    token = manage(env, "create_token", "admin", "--name", "bench").split("shp_", 1)[1].split()[0]
    port = free_port()
    began = time.monotonic()
    server = start(env, port, work / "serve.log")
    seconds["start"] = time.monotonic() - began
    import django

    django.setup()
    return server, Api(f"http://127.0.0.1:{port}", "shp_" + token)


def train_and_evaluate(api: Api, dataset: str, args, training: dict, key: str) -> dict:
    began = time.monotonic()
    train = api(
        "POST",
        "/runs",
        {"kind": "train", "dataset": dataset, "method": "grpo", "training": training},
        **{"Idempotency-Key": f"{key}-train"},
    )
    version = train["trains_version"]
    train = api.finished(train, every=10)
    trained = time.monotonic()
    status = api("GET", f"/model-versions/{version}")["status"]
    if status != "ready":
        raise SystemExit(f"version {version} is {status}")
    side = api(
        "POST",
        "/runs",
        {
            "kind": "evaluate",
            "candidate": version,
            "rubric": "aria-voice",
            "character": "aria",
            "group_size": args.k,
            "max_tokens": args.max_tokens,
        },
        **{"Idempotency-Key": f"{key}-evaluate"},
    )
    while (evaluation := api("GET", f"/evaluations/{side['evaluation']}"))["status"] == "running":
        time.sleep(5)
    if evaluation["status"] != "done":
        raise SystemExit(f"evaluation {evaluation['id']} {evaluation['status']}")
    return {
        "train_run": train["id"],
        "version": version,
        "evaluation": evaluation,
        "seconds": {"train_and_export": time.monotonic() - began, "evaluate": time.monotonic() - trained},
    }


def steps_table(run_id: int) -> dict:
    from labelling.models import TrainingStep

    rows = list(TrainingStep.objects.filter(run_id=run_id).order_by("step"))
    names = sorted({k for r in rows for k in (r.metrics.get("rewards") or {})})
    per_step = [
        {
            "step": r.step,
            "reward": r.reward_mean,
            "kl": r.kl,
            "elapsed_s": r.metrics.get("elapsed_s"),
            **{n: (r.metrics.get("rewards") or {}).get(n) for n in names},
        }
        for r in rows
    ]
    return {"names": names, "steps": per_step}


def fifth_means(steps: list[dict], name: str) -> tuple[float, float]:
    values = [s[name] for s in steps if s.get(name) is not None]
    if not values:
        return float("nan"), float("nan")
    n = max(1, len(values) // 5)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def side_by_side(evaluation_id: int, count: int) -> list[dict]:
    from labelling.models import Evaluation, Generation

    evaluation = Evaluation.objects.get(pk=evaluation_id)
    rows = []
    for prompt in evaluation.prompt_set.prompts.order_by("pk")[:count]:
        texts = {}
        for side, run in (("v1", evaluation.baseline_run), ("v2", evaluation.candidate_run)):
            g = Generation.objects.filter(group__run=run, group__prompt=prompt, revision=0).order_by("index").first()
            texts[side] = g.text if g else None
        rows.append({"prompt": prompt.messages[-1]["content"], **texts})
    return rows


def divergence(v1: int, v2: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_demo_model import divergence as measure

    from inference.engine import BatchingEngine
    from inference.versions.served import version_dir

    a, b = BatchingEngine(version_dir(v1)), BatchingEngine(version_dir(v2))
    try:
        return measure(a, b)
    finally:
        a.close()
        b.close()


def report(name: str, result: dict, steps: dict) -> None:
    ev = result["evaluation"]["result"]
    print(f"\n== {name}: v{result['version']} against v1 ==")
    print(f"{'reward function':<18} {'first fifth':>12} {'last fifth':>11}")
    for key in ["reward", *steps["names"]]:
        first, last = fifth_means(steps["steps"], key)
        print(f"{key:<18} {first:>12.3f} {last:>11.3f}")
    win = ev["win_rate"]
    print(
        f"win rate {win['estimate']:.3f} [{win['low']:.3f}, {win['high']:.3f}] on {ev['prompts']} held-out prompts "
        f"({ev['wins']} won, {ev['ties']} tied, {ev['losses']} lost), sign test p = {ev['sign_test_p']:.4f}"
    )
    for key, d in ev["criteria"].items():
        print(f"  {key:<14} difference {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    for source, b in (ev.get("by_source") or {}).items():
        w = b["win_rate"]
        print(f"  {source} alone: win rate {w['estimate']:.3f} [{w['low']:.3f}, {w['high']:.3f}], {b['verdict']}")
    print(f"  mean length (words) v2 {ev['length']['candidate']:.1f}, v1 {ev['length']['baseline']:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench-round")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--held-out", type=float, default=0.4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--k", type=int, default=4, help="completions per held-out prompt and version")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--compare-sampling", action="store_true")
    args = parser.parse_args()
    if args.work.exists() and any(args.work.iterdir()):
        raise SystemExit(f"{args.work} is not empty: remove it or pass another --work")
    args.work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    server, api = demo_up(args.work, args.models_dir, "bench-round", seconds)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds}
    try:
        began = time.monotonic()
        run = api(
            "POST",
            "/runs",
            {
                "kind": "generate",
                "character": "aria",
                "prompt_set": "aria-everyday",
                "rubric": "aria-voice",
                "group_size": args.group_size,
                "max_tokens": args.max_tokens,
            },
            **{"Idempotency-Key": f"round-generate-{uuid.uuid4()}"},
        )
        run = api.finished(run)
        seconds["generate_and_judge"] = time.monotonic() - began
        print(f"generate run {run['id']}: {run['done_items']} prompts x {args.group_size}, judged")
        dataset = api(
            "POST",
            "/datasets",
            {
                "dataset": "aria-round",
                "kind": "grpo_prompts",
                "filter": {"runs": [run["id"]], "rubric": "aria-voice", "held_out": args.held_out},
            },
        )
        name = f"{dataset['dataset']}@{dataset['number']}"
        print(f"dataset {name}: {dataset['row_count']} prompts to train on")
        training = {"steps": args.steps, "seed": args.seed, "save_steps": max(10, args.steps // 4)}
        matched = train_and_evaluate(api, name, args, training, "round-matched")
        seconds.update({f"matched_{k}": v for k, v in matched["seconds"].items()})
        results["matched"] = {**matched, "steps": steps_table(matched["train_run"])}
        results["matched"]["divergence_from_v1"] = divergence(1, matched["version"])
        results["matched"]["side_by_side"] = side_by_side(matched["evaluation"]["id"], 3)
        if args.compare_sampling:
            trl = {**training, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
            other = train_and_evaluate(api, name, args, trl, "round-trl-sampling")
            seconds.update({f"trl_sampling_{k}": v for k, v in other["seconds"].items()})
            results["trl_sampling"] = {**other, "steps": steps_table(other["train_run"])}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    (args.work / "round.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\nwall time per stage (s):")
    for key, value in seconds.items():
        print(f"  {key:<32} {value:>8.0f}")
    report("sampling as served (temperature 0.7, top-p 0.8, top-k 20)", results["matched"], results["matched"]["steps"])
    d = results["matched"]["divergence_from_v1"]
    print(f"  v2 against v1, per answer token: KL {d['kl_mean']:.4f}, top-1 agreement {d['top1_agree']:.3f}")
    if "trl_sampling" in results:
        report(
            "TRL's default sampling (temperature 1.0, whole vocabulary)",
            results["trl_sampling"],
            results["trl_sampling"]["steps"],
        )
    print("\nheld-out prompts, v1 and v2 (first completion, same seed):")
    for row in results["matched"]["side_by_side"]:
        print(f"\n> {row['prompt']}\n  v1: {row['v1']!r}\n  v2: {row['v2']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

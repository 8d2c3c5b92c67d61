"""A campaign on the demo model, measured: rounds that run themselves, on the CPU.

    python bench/bench_campaign.py [--rounds 3] [--steps 20] [--prompts-per-round 12]

What `make run` starts (migrate, prepare_model, seed_demo, serve: web, huey, the training
consumer and tritonserver, on the demo model, SmolLM2-135M-Instruct), driven through the JSON
API: one campaign on aria-everyday with the aria-voice rubric (GRPO, trigger continuous), and a
scripted reviewer that scores the groups routed to it through the reviewer API by a rule:

- in-character: 1, plus 2 for a sea or sky word (harbour, ship, tide, star, ...), plus 2 when
  the answer signs "- Aria";
- helpfulness: 4 for an answer of 8 to 60 words, 2 otherwise.

The rule is a stand-in for people, not a judgment of quality. The judge is the demo model's
own weights (the demo's set-up). `min_agreement` is -1 here, so a judge that does not agree with
the rule still trains, and its agreement is reported, not acted on. Printed per round: the win
rate against the parent with its interval and the verdict, judge-human agreement before and
after calibration per criterion, the share of groups the reviewer scored, and the wall time of
each step. Written to WORK/campaign.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_round import Api, demo_up  # noqa: E402

SEA = re.compile(r"\b(harbou?r|ship|boat|sea|tide|star|stars|sail|wave|waves|pilot|night|sky|compass|port)\b", re.I)
SIGNED = re.compile(r"(?m)^\s*-\s*Aria\W*\Z")


def score(text: str, key: str) -> int:
    if key == "in-character":
        return min(5, 1 + (2 if SEA.search(text) else 0) + (2 if SIGNED.search(text) else 0))
    words = len(text.split())
    return 4 if 8 <= words <= 60 else 2


def review_all(api: Api) -> int:
    reviewed = 0
    while (group := api("POST", "/review/next")) is not None:
        scores = {
            str(c["generation"]): {k["key"]: score(c["text"], k["key"]) for k in group["criteria"] if not k["rule"]}
            for c in group["completions"]
        }
        api("POST", f"/review/{group['assignment']}/submit", {"submission_id": str(uuid.uuid4()), "scores": scores})
        reviewed += 1
    return reviewed


def campaign_spec(rounds: int = 3, steps: int = 20, prompts_per_round: int = 12, held_out: float = 0.25) -> dict:
    """The campaign this bench runs (docs/campaigns.md shows it with these defaults)."""
    return {
        "slug": "aria-bench",
        "name": "Aria, measured",
        "character": "aria",
        "rubric": "aria-voice",
        "prompt_set": "aria-everyday",
        "held_out": held_out,
        "method": "grpo",
        "trigger": "continuous",
        "rounds": rounds,
        "policy": {
            "prompts_per_round": prompts_per_round,
            "max_tokens": 96,
            "temperature": 0.7,
            "review_share": 0.25,
            "audit_share": 0.1,
            "min_agreement": -1.0,
            "review_deadline_s": 600,
            "training": {"steps": steps, "seed": 3},
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench-campaign")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts-per-round", type=int, default=12)
    parser.add_argument("--held-out", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=3 * 3600)
    args = parser.parse_args()
    if args.work.exists() and any(args.work.iterdir()):
        raise SystemExit(f"{args.work} is not empty: remove it or pass another --work")
    args.work.mkdir(parents=True, exist_ok=True)
    seconds: dict = {}
    server, api = demo_up(args.work, args.models_dir, "bench-campaign", seconds)
    print(f"set up and started in {seconds['set_up'] + seconds['start']:.0f} s")
    spec = campaign_spec(args.rounds, args.steps, args.prompts_per_round, args.held_out)
    reviewed = 0
    try:
        api("POST", "/campaigns", spec)
        api("POST", "/campaigns/aria-bench/rounds")
        deadline = time.monotonic() + args.timeout
        while (campaign := api("GET", "/campaigns/aria-bench"))["status"] == "active":
            if time.monotonic() > deadline:
                raise SystemExit("the campaign did not finish in time")
            reviewed += review_all(api)
            time.sleep(5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    (args.work / "campaign.json").write_text(json.dumps(campaign, indent=2, default=str) + "\n")
    print(f"\ncampaign {campaign['slug']}: {campaign['status']}: {campaign['status_reason']}")
    print(f"the scripted reviewer scored {reviewed} groups\n")
    print(
        f"{'round':<6} {'versions':<9} {'outcome':<13} {'win rate [95% interval]':<26} {'prompts':>7} {'routed':>7} {'reviewed':>9}"
    )
    for r in campaign["figures"]["rounds"]:
        w = r["win_rate"]
        win = f"{w['estimate']:.3f} [{w['low']:.3f}, {w['high']:.3f}]" if w else "-"
        versions = (
            f"v{r['parent_version']}->v{r['candidate_version']}"
            if r["candidate_version"]
            else f"v{r['parent_version']}"
        )
        print(
            f"{r['number']:<6} {versions:<9} {r['outcome'] or r['step']:<13} {win:<26} {r['prompts'] or 0:>7} "
            f"{r['routed']:>4}/{r['groups'] or 0:<3}{r['reviewed'] or 0:>8}"
        )
    print("\njudge against the reviewer (alpha raw -> calibrated, rho raw -> calibrated, completions):")
    for r in campaign["figures"]["rounds"]:
        for key, c in r["calibration"].items():
            print(
                f"  round {r['number']} {key:<13} alpha {c['alpha_raw']} -> {c['alpha_calibrated']}, "
                f"rho {c['rho_raw']} -> {c['rho_calibrated']}, n={c['n']}{'' if c['calibrated'] else ' (not fitted)'}"
            )
    print("\nwall time per step (s):")
    steps = ["generate", "review", "calibrate", "freeze", "train", "evaluate"]
    print(f"  {'round':<6}" + "".join(f"{s:>10}" for s in steps))
    for r in campaign["figures"]["rounds"]:
        print(f"  {r['number']:<6}" + "".join(f"{r['stages'].get(s, float('nan')):>10.1f}" for s in steps))
    print("\nreward per criterion, candidate minus parent (held-out prompts):")
    for r in campaign["figures"]["rounds"]:
        if r["criteria"]:
            print(f"  round {r['number']}: " + ", ".join(f"{k} {d['estimate']:+.3f}" for k, d in r["criteria"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

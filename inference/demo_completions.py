"""Regenerate the demo's completion groups (labelling/demo/aria-completions.jsonl) with the demo model.

    python -m inference.demo_completions [--models-dir DIR] [--prompts 5] [--group-size 4]

What a new install's reviewers see first are these groups: real answers of the demo model
(SmolLM2-135M-Instruct, prepared by `manage.py prepare_model`) in Aria's persona, each scored by
the same model as the judge on the rubric's judge criteria (the rule criteria are scored when
the file is imported). Made with the app's own engine, chat template and sampling defaults,
seeded, so running this again on the same build writes the same file. Django-free: it reads
labelling/demo/aria.yaml and writes JSONL in the import format (docs/import-format.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from inference.demo_model import DEMO, prepare
from inference.engine import SamplingParams, open_engine
from inference.judging import run_judge

DEMO_DIR = Path(__file__).resolve().parent.parent / "labelling" / "demo"
MAX_TOKENS = 96
SEED = 20261203


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=DEMO_DIR.parents[1] / "data" / "models")
    parser.add_argument("--prompts", type=int, default=5, help="how many of aria-demo's prompts get a group")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--output", type=Path, default=DEMO_DIR / "aria-completions.jsonl")
    args = parser.parse_args(argv)
    record = prepare(args.models_dir, DEMO)
    demo = yaml.safe_load((DEMO_DIR / "aria.yaml").read_text())
    character = next(c for c in demo["characters"] if c["slug"] == "aria")
    rubric = next(r for r in demo["rubrics"] if r["slug"] == "aria-voice")
    prompts = next(p for p in demo["prompt_sets"] if p["slug"] == "aria-demo")["prompts"][: args.prompts]
    engine = open_engine(record["onnx_dir"])
    model = f"{record['model']} (demo model, {record['precision']})"

    def group(item: tuple[int, dict]) -> dict:
        i, prompt = item
        messages = [{"role": "system", "content": character["persona"]}, *prompt["messages"]]
        params = SamplingParams(max_tokens=MAX_TOKENS, n=args.group_size, seed=SEED + 100 * i)
        texts = [c.text.strip() for c in engine.generate(messages=messages, params=params)]
        scores = [run_judge(engine, rubric, messages, text, seed=SEED) for text in texts]
        return {
            "kind": "group",
            "character": "aria",
            "prompt_set": "aria-demo",
            "prompt": prompt["id"],
            "completions": texts,
            "model": model,
            "rubric": "aria-voice",
            "judge_scores": [{"scores": s.scores, "rationale": s.rationale} for s in scores],
        }

    try:
        with ThreadPoolExecutor(len(prompts)) as pool:
            groups = list(pool.map(group, enumerate(prompts)))
    finally:
        engine.close()
    args.output.write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in groups), encoding="utf-8")
    print(f"wrote {len(groups)} groups of {args.group_size} by {model} to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

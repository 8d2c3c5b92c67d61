"""The demo model in fp32 against int4: speed, and how much the answers change.

    python bench/bench_demo_model.py                       # prepares the demo model if needed, builds int4 beside it
    python bench/bench_demo_model.py --compare DIR_A DIR_B # the divergence table for any two ONNX folders

Both builds come from the same Hugging Face weights (the GGUF dequantized to fp32), run on the
project's engine, in one process, taking turns (so a busy machine slows both alike). Printed:

- decode speed: one request alone and 8 prompts x 4 completions at once, tokens/s, and the
  int4/fp32 ratio;
- how much the answers change: fp32's own sampled completions scored token by token by both
  builds (teacher forcing): the mean KL divergence KL(fp32 || int4) per token, and how often
  the two builds' most likely next token agree; greedy completions of both builds, and where
  they first differ.

`--compare` prints the same divergence figures for two folders (e.g. a trained version against
its parent), so a quantization's change can be set beside what a training round changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.engine import BatchingEngine, SamplingParams  # noqa: E402

PERSONA = (
    "You are Aria, a warm and curious ship's navigator on a long-haul research vessel. "
    "You speak plainly and briefly, admit what you do not know, and sign your answers '- Aria'."
)
QUESTIONS = [
    "How do I find the North Star tonight?",
    "Do you ever get lonely on night watch?",
    "Be honest: are you a person?",
    "I'm going camping for two nights. What should I pack?",
    "What is a nebula, in two sentences?",
    "I plotted the wrong course and we lost a day. How do I tell the captain?",
    "What's the best way to learn to read a nautical chart?",
    "Can you recommend a good book for a long voyage?",
]


def messages(question: str) -> list[dict]:
    return [{"role": "system", "content": PERSONA}, {"role": "user", "content": question}]


def logprobs(engine: BatchingEngine, tokens: np.ndarray) -> np.ndarray:
    """Log-softmax of the next-token logits at every position of `tokens` (one forward pass)."""
    spec = engine.batcher.spec
    feeds = {
        spec.input_ids: tokens[None, :].astype(spec.ids_dtype),
        spec.attention_mask: np.ones((1, len(tokens)), dtype=spec.mask_dtype),
    }
    for name in spec.past_names:
        feeds[name] = np.zeros((1, spec.kv_heads, 0, spec.head_size), dtype=spec.kv_dtype)
    if spec.position_ids:
        feeds[spec.position_ids] = np.arange(len(tokens), dtype=np.int64)[None, :]
    logits = engine.session.run([spec.logits], feeds)[0][0].astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def divergence(a: BatchingEngine, b: BatchingEngine, *, seeds: int = 4, max_tokens: int = 96) -> dict:
    """b's view of a's sampled answers: KL(a || b) per answer token, top-1 agreement, and greedy texts."""
    kls, agree, total = [], 0, 0
    for i, question in enumerate(QUESTIONS):
        prompt = a.encode(a.chat_template.render(messages(question)))
        for completion in a.generate(
            messages=messages(question), params=SamplingParams(max_tokens=max_tokens, n=seeds, seed=100 + i)
        ):
            answer = a.encode(completion.text)
            if len(answer) == 0:
                continue
            tokens = np.concatenate([prompt, answer])
            span = slice(len(prompt) - 1, len(tokens) - 1)  # the positions that predict the answer
            pa, pb = logprobs(a, tokens)[span], logprobs(b, tokens)[span]
            kls.extend((np.exp(pa) * (pa - pb)).sum(axis=-1).tolist())
            agree += int((pa.argmax(-1) == pb.argmax(-1)).sum())
            total += len(answer)
    same, first = 0, []
    for question in QUESTIONS:
        greedy = SamplingParams(max_tokens=64, temperature=0.0)
        ta = a.generate(messages=messages(question), params=greedy)[0].text
        tb = b.generate(messages=messages(question), params=greedy)[0].text
        same += ta == tb
        ia, ib = a.encode(ta), b.encode(tb)
        n = min(len(ia), len(ib))
        diff = next((k for k in range(n) if ia[k] != ib[k]), n)
        first.append(diff)
    return {
        "answer_tokens": total,
        "kl_mean": float(np.mean(kls)),
        "kl_p90": float(np.percentile(kls, 90)),
        "top1_agree": agree / max(total, 1),
        "greedy_same": f"{same}/{len(QUESTIONS)}",
        "greedy_first_diff_median": float(np.median(first)),
    }


def speed(engine: BatchingEngine, rounds: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    single, batched = [], []
    for r in range(rounds):
        started = time.perf_counter()
        done = engine.generate(
            messages=messages(QUESTIONS[r % len(QUESTIONS)]), params=SamplingParams(max_tokens=96, seed=r)
        )
        single.append(sum(c.completion_tokens for c in done) / (time.perf_counter() - started))
        seeds = [10 * r + i for i in range(len(QUESTIONS))]
        started = time.perf_counter()
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            results = list(
                pool.map(
                    lambda q, seed: engine.generate(
                        messages=messages(q), params=SamplingParams(max_tokens=96, n=4, seed=seed)
                    ),
                    QUESTIONS,
                    seeds,
                )
            )
        tokens = sum(c.completion_tokens for group in results for c in group)
        batched.append(tokens / (time.perf_counter() - started))
    return {"single_tok_s": float(np.median(single)), "batched_tok_s": float(np.median(batched))}


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        a, b = (BatchingEngine(d) for d in args.compare)
        print(json.dumps({"a": str(args.compare[0]), "b": str(args.compare[1]), **divergence(a, b)}, indent=2))
        return 0

    from inference import build_model
    from inference.demo_model import DEMO, prepare

    record = prepare(args.models_dir)
    root = args.models_dir / DEMO.name
    fp32 = Path(record["onnx_dir"])
    int4 = root / "onnx-int4"
    if build_model.build_precision(int4) != "int4":
        build_model.convert(root / "hf", int4, root / "builder-cache", precision="int4")
        build_model.finish_config(int4)
        build_model.write_record(int4, {"from_hf": str(root / "hf"), "precision": "int4", "target": "cpu"})
    engines = {"fp32": BatchingEngine(fp32), "int4": BatchingEngine(int4)}
    rows = {name: {"size_mb": size_mb(d)} for name, d in (("fp32", fp32), ("int4", int4))}
    for _ in range(2):  # taking turns
        for name, engine in engines.items():
            rows[name].setdefault("runs", []).append(speed(engine, max(1, args.rounds // 2)))
    for row in rows.values():
        runs = row.pop("runs")
        row["single_tok_s"] = float(np.median([r["single_tok_s"] for r in runs]))
        row["batched_tok_s"] = float(np.median([r["batched_tok_s"] for r in runs]))
    change = divergence(engines["fp32"], engines["int4"])
    print(f"\n{DEMO.title}, the project's engine on {engines['fp32'].threads} threads")
    print(f"{'build':<6} {'size MB':>8} {'1 request tok/s':>16} {'8x4 at once tok/s':>19}")
    for name, row in rows.items():
        print(f"{name:<6} {row['size_mb']:>8.0f} {row['single_tok_s']:>16.1f} {row['batched_tok_s']:>19.1f}")
    print(
        f"int4/fp32: {rows['int4']['single_tok_s'] / rows['fp32']['single_tok_s']:.2f}x alone, "
        f"{rows['int4']['batched_tok_s'] / rows['fp32']['batched_tok_s']:.2f}x batched"
    )
    print("\nHow much int4 changes fp32's answers (fp32's sampled answers, scored by both):")
    for key, value in change.items():
        print(f"  {key:<26} {value:.4f}" if isinstance(value, float) else f"  {key:<26} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

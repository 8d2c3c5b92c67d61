"""Build ONNX model directories for onnxruntime-genai: Qwen3-shaped presets with random weights,
or any Hugging Face decoder folder the builder converts (Qwen3 is the production target).

    python -m inference.build_model --keep-hf             # the tiny model shipped in the repo (+ hf/)
    python -m inference.build_model --preset qwen3-0.6b-shape   # benchmark-sized, random weights
    python -m inference.build_model --from-hf ~/models/Qwen3-0.6B --output data/models/qwen3-0.6b
    python -m inference.build_model --from-hf ~/models/Qwen3-8B --output /models/judge --target cuda  # a GPU host
    python -m inference.build_model --from-hf ~/models/Qwen3-8B --output /models/judge --target cuda --paged-attention

The tiny model has random weights (a fixed seed) and its own small byte-level BPE
tokenizer with Qwen3's special tokens and a Qwen3-style chat template. Its text
is nonsense; it exercises every path (streaming, batching, guidance, think tags)
in a few MB, so the tests run without downloading anything. Real text comes from the demo
model `make run` prepares (inference/demo_model.py) or from a real export (`--from-hf`).

Needs the `build` extra (torch, transformers, gguf, onnx, tokenizers):
`pip install torch==2.13.0 && pip install -e '.[build]'`. Serving needs none of it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TINY_OUTPUT = PROJECT_ROOT / "inference" / "weights" / "tiny-qwen3"
SEED = 20261124

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3 keeps the think tags visible in decoded text: added tokens, not special ones.
TEXT_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>"]

# Qwen3's template, trimmed to what this project uses (no tools): ChatML, earlier
# assistant turns without their thinking, and an empty think block when thinking is off.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

CORPUS = """\
Aria is the navigator of a small trading ship. She is curious, dry-witted and calm under pressure.
When a storm rises she checks the charts twice and tells the crew exactly what she sees.
A good character answers in her own voice, remembers what she has said before, and admits what she does not know.
The reviewer reads each reply, scores it against the rubric, and explains the score in a sentence or two.
Think before you answer: weigh the options, then choose, and say why.
"Where are we headed?" asked the captain. "North, past the reef, if the wind holds," said Aria.
Characters have attributes, abilities, a backstory, and habits of speech. Consistency matters more than flourish.
The judge gives a short rationale, then a score for each criterion, from one to five.
In character, helpful, concise, warm, honest, specific: these are the qualities the rubric rewards.
She laughed. "I have been wrong about the weather before, but never about the stars."
Rooms connect through doors: the kitchen opens onto the hall, the hall onto the garden.
To decide where to go, a character considers what she wants, what she fears, and what she knows.
Numbers and symbols appear too: 1 2 3 4 5 6 7 8 9 10, {"score": 4}, <score>3</score>, yes/no, true/false.
"""


@dataclass(frozen=True)
class Shape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 4096


PRESETS = {
    "tiny": Shape(64, 128, 2, 4, 2, 16),
    # Qwen3-0.6B's real dimensions (random weights, the small tokenizer's vocabulary).
    "qwen3-0.6b-shape": Shape(1024, 3072, 28, 16, 8, 128),
}
DEFAULT_OUTPUT = {"tiny": TINY_OUTPUT, "qwen3-0.6b-shape": PROJECT_ROOT / "data" / "models" / "qwen3-0.6b-shape"}


class BuildError(RuntimeError):
    pass


def _require_build_deps():
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BuildError(
            f"building models needs the build extra ({exc.name} is missing): "
            "pip install torch==2.13.0 && pip install -e '.[build]'"
        ) from None


def train_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer on the corpus above, with Qwen3's special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines() * 4, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",  # noqa: S106 - a token, not a password
        pad_token="<|endoftext|>",  # noqa: S106
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_hf(shape: Shape, hf_dir: Path, seed: int) -> dict:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = train_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + TEXT_TOKENS}
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        rope_theta=shape.rope_theta,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    return {"config": config.to_diff_dict(), "token_ids": ids}


# Where the model will run -> the builder's precision and execution provider.
TARGETS = {"cpu": ("fp32", "cpu"), "cuda": ("fp16", "cuda")}


def convert(
    hf_dir: Path,
    output: Path,
    cache_dir: Path,
    target: str = "cpu",
    paged: bool = False,
    *,
    precision: str | None = None,
) -> None:
    """onnxruntime-genai's builder: HF folder -> model.onnx(+.data), genai_config.json, tokenizer,
    chat template. `precision` overrides the target's (int4 on the CPU). `paged`: PagedAttention
    and an `engine.dynamic_batching` section, for onnxruntime-genai's continuous batching
    (inference/engine/paged.py); the builder takes it for CUDA only."""
    default_precision, provider = TARGETS[target]
    precision = precision or default_precision
    command = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-m",
        str(hf_dir),
        "-i",
        str(hf_dir),
        "-o",
        str(output),
        "-p",
        precision,
        "-e",
        provider,
        "-c",
        str(cache_dir),
    ]
    if paged:
        command += ["--extra_options", "use_paged_attention=true"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"the onnxruntime-genai builder failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def finish_config(output: Path, context_length: int | None = None) -> dict:
    """Sampling defaults (Qwen3's non-thinking ones, the engine's too) for onnxruntime-genai's own
    generator, and the context length. End-of-turn tokens stay as the builder resolved them from
    the model's own config and tokenizer (its eos_token_id and its end-of-turn token)."""
    path = output / "genai_config.json"
    config = json.loads(path.read_text())
    if context_length:
        config["model"]["context_length"] = context_length
    config["search"].update(
        {
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.8,
            "top_k": 20,
            "max_length": config["model"]["context_length"],
        }
    )
    path.write_text(json.dumps(config, indent=4) + "\n")
    return config


def write_record(output: Path, record: dict) -> dict:
    """BUILD.json: how the folder was built (source, precision, target) and with which tools."""
    record = {**record, "versions": _versions()}
    (output / "BUILD.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return record


def build_record(onnx_dir: Path) -> dict:
    """A folder's BUILD.json (how it was built), or {} when it has none or it does not read."""
    try:
        record = json.loads((Path(onnx_dir) / "BUILD.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def build_precision(onnx_dir: Path) -> str | None:
    """The precision a folder was built with (its BUILD.json), if it says."""
    value = build_record(onnx_dir).get("precision")
    return value if isinstance(value, str) else None


def build(
    preset: str | None,
    output: Path,
    *,
    from_hf: Path | None = None,
    force: bool = False,
    seed: int = SEED,
    target: str = "cpu",
    keep_hf: bool = False,
    paged: bool = False,
) -> Path:
    """Build `output`; with `keep_hf`, the Hugging Face weights (a preset's, or a copy of
    `from_hf`) stay beside it in `output/hf/` (what training starts from: the exact weights the
    ONNX files serve)."""
    _require_build_deps()
    if paged and target != "cuda":
        raise BuildError("--paged-attention needs --target cuda: onnxruntime-genai's PagedAttention runs on CUDA only")
    if output.exists() and any(output.iterdir()):
        if not force:
            raise BuildError(f"{output} exists; pass --force to overwrite it")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    record: dict = {"seed": seed, "target": target, "paged_attention": paged, "precision": TARGETS[target][0]}
    with tempfile.TemporaryDirectory(prefix="shaping-build-") as tmp:
        tmp_path = Path(tmp)
        if from_hf is not None:
            _check_hf(from_hf)
            hf_dir = from_hf
            record["from_hf"] = str(from_hf)
        else:
            hf_dir = tmp_path / "hf"
            record.update(preset=preset, **build_hf(PRESETS[preset], hf_dir, seed))
        convert(hf_dir, output, tmp_path / "cache", target, paged)
        if keep_hf:  # a preset's weights, or a copy of --from-hf's: what training from this build starts from
            shutil.copytree(hf_dir, output / "hf")
            weights = output / "hf" / "model.safetensors"
            if weights.is_file():
                record["hf_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    context = PRESETS[preset].max_position_embeddings if preset else None
    finish_config(output, context)
    write_record(output, record)
    return output


def _check_hf(path: Path) -> None:
    """A Hugging Face decoder folder: its config and the chat template the engines render with
    (any architecture onnxruntime-genai's builder converts; Qwen3 is the production target)."""
    from inference.engine.chat_template import ChatTemplate, ChatTemplateError

    config = path / "config.json"
    if not config.is_file():
        raise BuildError(f"{path} is not a Hugging Face model folder (no config.json)")
    try:
        ChatTemplate.from_model_dir(path)
    except ChatTemplateError as exc:
        raise BuildError(str(exc)) from None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "onnxruntime-genai", "onnxruntime-genai-cuda", "tokenizers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:  # the CPU or the CUDA build of onnxruntime-genai, not both
            continue
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="tiny",
        help="random-weight model: tiny (shipped) or qwen3-0.6b-shape (benchmarks)",
    )
    source.add_argument(
        "--from-hf", type=Path, help="convert a local Hugging Face decoder folder (with its chat template)"
    )
    parser.add_argument("--output", type=Path, help="output directory (default depends on the preset)")
    parser.add_argument("--force", action="store_true", help="overwrite the output directory")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default="cpu",
        help="where the model runs: cpu (fp32) or cuda (fp16, for a GPU host's onnxruntime-genai-cuda)",
    )
    parser.add_argument(
        "--paged-attention",
        action="store_true",
        help="with --target cuda: build for onnxruntime-genai's continuous batching (PagedAttention)",
    )
    parser.add_argument(
        "--keep-hf",
        action="store_true",
        help="keep the Hugging Face weights (a preset's, or a copy of --from-hf) in OUTPUT/hf (for training)",
    )
    args = parser.parse_args(argv)
    if args.from_hf and not args.output:
        parser.error("--from-hf needs --output")
    preset = None if args.from_hf else args.preset
    output = args.output or DEFAULT_OUTPUT[preset]
    started = time.monotonic()
    try:
        build(
            preset,
            output,
            from_hf=args.from_hf,
            force=args.force,
            seed=args.seed,
            target=args.target,
            keep_hf=args.keep_hf,
            paged=args.paged_attention,
        )
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in output.iterdir() if f.is_file())
    print(f"built {output} ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The training child: `python -m inference.versions.training CONFIG.json` checks its input, trains one
new model version with TRL and writes progress to stdout as JSON lines (the protocol is in
`inference/versions/training/__init__.py`).

Order matters for the parent: everything that can be wrong with the input (the config, the
dataset's rows, the rubric) is refused before torch, transformers or TRL are imported, so bad
input fails in well under a second; the `started` event is sent before the heavy imports too.
Library output (logs, warnings, progress bars) goes to stderr: the real stdout is taken over
at start-up and fd 1 pointed at stderr, so even C-level writes cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TextIO

from inference.versions.training import config as training_config
from inference.versions.training import data, rewards
from inference.versions.training.config import BadInput, ConfigError, RunConfig

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
KEEP_CHECKPOINTS = 2
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")


class Events:
    """One JSON object per line on the protocol stream, flushed at once; NaN and inf become null.

    A parent that went away (a broken pipe) does not stop the run: it still saves what it trains."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False
        self.lock = threading.Lock()  # the trainer's callbacks and a reward function's thread both emit

    def emit(self, event: str, **fields) -> None:
        if self.closed:
            return
        with self.lock:
            self._write(event, fields)

    def _write(self, event: str, fields: dict) -> None:
        try:
            self.stream.write(json.dumps({"event": event, **_finite(fields)}, allow_nan=False) + "\n")
            self.stream.flush()
        except OSError:  # BrokenPipeError among them
            self.closed = True


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _take_stdout() -> TextIO:
    """The real stdout as a private stream; fd 1 and sys.stdout go to stderr from now on."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


class Cancel:
    """A cancel request: the CANCEL file in the output folder, or SIGTERM."""

    def __init__(self, cancel_file: Path) -> None:
        self.cancel_file = cancel_file
        self.signalled = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.signalled = True

    def requested(self) -> bool:
        return self.signalled or self.cancel_file.exists()


# --- checkpoints ----------------------------------------------------------------------


def latest_checkpoint(checkpoints_dir: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint (step, folder). A folder without a readable
    trainer_state.json (the Trainer writes it last) is a save cut short by a kill: removed, so
    it can neither be resumed from nor counted by the Trainer's rotation."""
    found = []
    if not checkpoints_dir.is_dir():
        return None
    for folder in checkpoints_dir.iterdir():
        match = _CHECKPOINT_RE.fullmatch(folder.name)
        if not match or not folder.is_dir():
            continue
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        found.append((int(match[1]), folder))
    return max(found) if found else None


# --- the run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    clock = time.monotonic()
    protocol = _take_stdout()
    # Under a multi-process launcher (accelerate launch --num_processes N) only the main
    # process speaks the protocol; the others train in step with it, silently.
    events = Events(protocol if int(os.environ.get("RANK", "0")) == 0 else open(os.devnull, "w"))  # noqa: SIM115
    os.environ.update(OFFLINE)
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) != 1:
            raise ConfigError("usage: python -m inference.versions.training CONFIG.json")
        run = training_config.load(argv[0])
        rows = data.load_rows(run.dataset_path, run.dataset_kind)
        reward_plan = None
        if run.method == "grpo":
            reward_plan = rewards.plan(
                run.rubric, triton_url=run.triton_url, reward_weights=run.params["reward_weights"]
            )
    except BadInput as exc:
        events.emit("error", error=type(exc).__name__, message=str(exc))
        return EXIT_BAD_INPUT
    try:
        cancel = Cancel(run.cancel_file)
        run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        resume = latest_checkpoint(run.checkpoints_dir)
        events.emit(
            "started",
            max_steps=run.params["steps"],
            resumed_from=resume[0] if resume else None,
            params=run.params,
            reward_functions=reward_plan.names if reward_plan else None,
            reward_weights=reward_plan.weights if reward_plan else None,
        )
        finished = train(run, rows, reward_plan, resume, cancel, events, clock)
        events.emit("finished", **finished)
        return 0
    except ModuleNotFoundError as exc:  # `make run` installs no trainer: say what to install
        traceback.print_exc(file=sys.stderr)
        message = f"{exc.name} is not installed: training needs the train extra (pip install -e '.[train]')"
        events.emit("error", error="TrainingDependencies", message=message)
        return EXIT_FAILED
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        events.emit("error", error=type(exc).__name__, message=str(exc))
        return EXIT_FAILED


def train(
    run: RunConfig,
    rows: list[dict],
    reward_plan: rewards.RewardPlan | None,
    resume: tuple[int, Path] | None,
    cancel: Cancel,
    events: Events,
    clock: float,
) -> dict:
    """Train, save the final weights, and return the `finished` event's fields."""
    import torch
    import transformers
    from datasets import Dataset

    from inference.versions.training.progress import Progress

    transformers.logging.set_verbosity_warning()
    p = run.params
    device = train_device(run.device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.base_hf_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(run.base_hf_dir, dtype=torch.float32)
    peft_config = None
    if p["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=p["lora_r"], lora_alpha=p["lora_alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
        )
    common = {
        "output_dir": str(run.checkpoints_dir),
        "max_steps": p["steps"],
        "per_device_train_batch_size": p["per_device_batch_size"],
        "gradient_accumulation_steps": 1,
        "learning_rate": p["learning_rate"],
        "seed": p["seed"],
        "data_seed": p["seed"],
        "logging_steps": p["logging_steps"],
        "save_strategy": "steps",
        "save_steps": p["save_steps"],
        "save_total_limit": KEEP_CHECKPOINTS,
        "save_only_model": False,  # resuming needs the optimizer, scheduler and RNG states
        "report_to": "none",
        "push_to_hub": False,
        "use_cpu": device == "cpu",
        # TRL's configs default to bf16. The weights stay float32 either way; on a GPU the
        # matrix products run in bf16 (mixed precision), on the CPU in float32.
        "bf16": device == "cuda" and torch.cuda.is_bf16_supported(),
        "fp16": False,
        "gradient_checkpointing": False,  # TRL's default is on: slower, and no memory to save here
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    dataset = Dataset.from_list(rows)
    transformers.set_seed(p["seed"])  # the LoRA adapters' initial weights are drawn before the Trainer seeds
    if run.method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        args = GRPOConfig(
            **common,
            num_generations=p["num_generations"],
            beta=p["beta"],
            loss_type=p["loss_type"],
            scale_rewards=p["scale_rewards"],
            max_completion_length=p["max_completion_length"],
            temperature=p["temperature"],
            top_p=p["top_p"],
            top_k=p["top_k"],
            reward_weights=reward_plan.weights,
            # Prompts rendered as the server renders them: thinking off where the template has a switch.
            chat_template_kwargs=_chat_template_kwargs(run.base_hf_dir),
        )
        live = None
        if run.live_review is not None:
            live = rewards.LiveReview(
                share=run.live_review["share"],
                deadline_s=run.live_review["deadline_s"],
                folder=Path(run.live_review["folder"]),
                emit=events.emit,
            )
        funcs = rewards.build(reward_plan, triton_url=run.triton_url, concurrency=run.judge_concurrency, live=live)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    elif run.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=p["beta"], max_length=p["max_length"])
        # No ref_model given: TRL loads one from the model's own path, base_hf_dir (the parent
        # version), and with LoRA uses the model with its adapters disabled, the same weights.
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, max_length=p["max_length"])
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
    progress = Progress(events, method=run.method, cancel=cancel, clock=clock)
    trainer.add_callback(progress)
    began = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    seconds = time.monotonic() - began
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():  # one writer of the final folder
        save_final(trainer.accelerator.unwrap_model(trainer.model), run, merge=p["lora"])
    trainer.accelerator.wait_for_everyone()
    step = trainer.state.global_step
    done_here = step - (resume[0] if resume else 0)
    memory = {"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20)} if device == "cuda" else {}
    return {
        "step": step,
        "device": device,
        **memory,
        "stopped": "cancelled" if progress.cancelled else "completed",
        "hf_dir": str(run.hf_dir.resolve()),
        "seconds": round(seconds, 3),
        "steps_per_s": round(done_here / seconds, 4) if seconds > 0 else None,
    }


def train_device(requested: str) -> str:
    """Where this trainer runs: "cuda" when asked for, or on "auto" when torch sees a GPU; else "cpu"."""
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise ConfigError("TRAIN_DEVICE is cuda, but torch sees no GPU here (torch.cuda.is_available() is False)")
    return "cpu"


def _chat_template_kwargs(base_hf_dir: Path) -> dict | None:
    """What the server passes its chat template (inference.engine.chat_template): thinking off, for a
    template that has the switch (Qwen3's); nothing for one that has not."""
    from inference.engine.chat_template import ChatTemplate

    return {"enable_thinking": False} if ChatTemplate.from_model_dir(base_hf_dir).supports_thinking else None


def save_final(model, run: RunConfig, *, merge: bool) -> None:
    """The trained weights as a complete Hugging Face folder at output_dir/hf: the model's
    safetensors and config, and every other file of base_hf_dir (tokenizer, chat template) as
    it was, so the ONNX builder converts it like the parent. Written to hf.tmp, then renamed."""
    if merge:
        model = model.merge_and_unload()
    tmp, final = run.output_dir / "hf.tmp", run.hf_dir
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for source in run.base_hf_dir.iterdir():
        weights = source.suffix in (".safetensors", ".bin", ".pt", ".pth") or source.name.endswith(".index.json")
        if source.is_file() and not weights and not (tmp / source.name).exists():
            shutil.copy2(source, tmp / source.name)
    old = run.output_dir / "hf.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)

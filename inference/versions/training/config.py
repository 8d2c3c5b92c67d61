"""A training run's settings: the methods, their recorded defaults, and the checks a run request
passes before it is queued (`resolve`) or before the child trains (`load`).

Pure Python on purpose: the Django side validates requests with `resolve` on every submit, and
the child refuses bad input with it before it imports torch or TRL (seconds). The names of the
GRPO/DPO/SFT settings are TRL 1.16's (`GRPOConfig`, `DPOConfig`, `SFTConfig`), except
`steps` (`max_steps`), `per_device_batch_size` (`per_device_train_batch_size`) and the LoRA
ones (`peft.LoraConfig`'s `r` and `lora_alpha`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

# method -> the dataset kind (labelling/datasets/formats.py) it trains on
METHODS = {"grpo": "grpo_prompts", "dpo": "dpo", "sft": "sft"}

_COMMON = {
    "steps": 20,
    # 5e-3 moves the shipped tiny model (random weights, hidden size 64) visibly within a few
    # dozen steps; a real model wants something near TRL's own defaults (1e-6 GRPO/DPO, 2e-5 SFT).
    "learning_rate": 5e-3,
    "per_device_batch_size": 8,
    "seed": 0,
    "save_steps": 10,
    "logging_steps": 1,
    "lora": False,
    "lora_r": 8,
    "lora_alpha": 16,
}

DEFAULTS: dict[str, dict] = {
    "grpo": {
        **_COMMON,
        "steps": 40,
        "num_generations": 8,
        # KL to the parent (the reference model) keeps the character anchored; TRL's default 0
        # would drop the reference model altogether.
        "beta": 0.04,
        "loss_type": "dapo",  # TRL 1.16's default, recorded so a later TRL cannot change it silently
        "scale_rewards": "group",  # likewise
        "max_completion_length": 16,
        # Rollouts sample as the app serves and evaluates (inference.engine.SamplingParams'
        # defaults, Qwen3's non-thinking ones): TRL's own defaults (temperature 1.0 over the whole
        # vocabulary) would train on answers the served version never gives.
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        # None: one weight per reward function, derived from the rubric (inference/versions/training/rewards.py)
        "reward_weights": None,
    },
    # GRPOConfig has no prompt length limit in TRL 1.16; DPO and SFT truncate at max_length
    # (TRL's default, 1024 tokens).
    "dpo": {**_COMMON, "beta": 0.1, "max_length": 1024},
    "sft": {**_COMMON, "max_length": 1024},
}

# The loss types of TRL 1.16's GRPOConfig that need nothing this child does not set
# ('luspo' wants sequence-level importance sampling, 'vespo' vLLM's sampling correction).
GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
SCALE_REWARDS = ("group", "batch", "none")
MAX_STEPS = 100_000


class BadInput(ValueError):
    """Input the child cannot train on; the child reports the subclass's name as the error kind."""


class ConfigError(BadInput):
    """A setting that is unknown, of the wrong type or out of range, or a config file that is not one."""


class DatasetError(BadInput):
    """A dataset file that is missing, unreadable, empty or has rows the method cannot use."""


class RubricError(BadInput):
    """A GRPO rubric that gives no usable reward."""


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _need(ok: bool, key: str, value: object, what: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {what}; got {value!r}")


# A model this big or bigger is a real one (the tiny shipped model has about 0.2M parameters,
# the demo model 135M): it trains LoRA adapters by default, at LoRA's usual learning rate, and
# GRPO gives its answers room to end on their own (the tiny model's defaults above move random
# weights quickly and would wreck a real model's).
REAL_MODEL_PARAMETERS = 20_000_000
REAL_MODEL_DEFAULTS = {
    "grpo": {"lora": True, "lora_r": 16, "lora_alpha": 32, "learning_rate": 2e-4, "max_completion_length": 96},
    "dpo": {"lora": True, "lora_r": 16, "lora_alpha": 32, "learning_rate": 5e-5},
    "sft": {"lora": True, "lora_r": 16, "lora_alpha": 32, "learning_rate": 2e-4},
}


def parameter_count(hf_dir: str | Path | None) -> int | None:
    """About how many parameters a Hugging Face folder holds, from its weight files' sizes and
    their dtype (no torch); None when it cannot tell."""
    if hf_dir is None:
        return None
    folder = Path(hf_dir)
    try:
        config = json.loads((folder / "config.json").read_text())
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    except (OSError, ValueError):
        return None
    dtype = (config.get("torch_dtype") or config.get("dtype") or "float32") if isinstance(config, dict) else ""
    width = {"float32": 4, "float16": 2, "bfloat16": 2}.get(dtype, 4)
    return size // width if size else None


def model_defaults(method: str, base_hf_dir: str | Path | None) -> dict:
    """The defaults that depend on the model trained (see REAL_MODEL_DEFAULTS)."""
    count = parameter_count(base_hf_dir)
    if count is None or count < REAL_MODEL_PARAMETERS:
        return {}
    return dict(REAL_MODEL_DEFAULTS.get(method, {}))


def resolve(method: str, params: dict | None, *, base_hf_dir: str | Path | None = None) -> dict:
    """The method's defaults (for the model in `base_hf_dir`, when given) with `params` over
    them, checked; ConfigError says what is wrong."""
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of {', '.join(METHODS)}")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ConfigError(f"params must be an object; got {type(params).__name__}")
    known = {**DEFAULTS[method], **model_defaults(method, base_hf_dir)}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {method}; "
            f"known: {', '.join(known)}"
        )
    p = {**known, **params}
    for key in ("steps", "per_device_batch_size", "save_steps", "logging_steps", "lora_r"):
        _need(_int(p[key]) and p[key] >= 1, key, p[key], "a whole number, 1 or more")
    _need(p["steps"] <= MAX_STEPS, "steps", p["steps"], f"at most {MAX_STEPS}")
    _need(_int(p["seed"]) and 0 <= p["seed"] < 2**32, "seed", p["seed"], "a whole number, 0 to 2**32 - 1")
    _need(_number(p["learning_rate"]) and 0 < p["learning_rate"] <= 1, "learning_rate", p["learning_rate"], "in (0, 1]")
    _need(isinstance(p["lora"], bool), "lora", p["lora"], "true or false")
    _need(_number(p["lora_alpha"]) and p["lora_alpha"] > 0, "lora_alpha", p["lora_alpha"], "a number above 0")
    if "max_length" in p:
        _need(
            _int(p["max_length"]) and p["max_length"] >= 8, "max_length", p["max_length"], "a whole number, 8 or more"
        )
    if method == "dpo":
        _need(_number(p["beta"]) and p["beta"] > 0, "beta", p["beta"], "a number above 0")
    if method == "grpo":
        _check_grpo(p)
    return p


def _check_grpo(p: dict) -> None:
    n = p["num_generations"]
    _need(_int(n) and n >= 2, "num_generations", n, "a whole number, 2 or more (GRPO compares completions)")
    if p["per_device_batch_size"] % n:
        raise ConfigError(
            f"per_device_batch_size ({p['per_device_batch_size']}) must be a multiple of num_generations ({n}): "
            "each batch holds whole groups of completions of one prompt"
        )
    _need(_number(p["beta"]) and p["beta"] >= 0, "beta", p["beta"], "a number, 0 or more")
    _need(p["loss_type"] in GRPO_LOSS_TYPES, "loss_type", p["loss_type"], f"one of {', '.join(GRPO_LOSS_TYPES)}")
    _need(
        p["scale_rewards"] in SCALE_REWARDS, "scale_rewards", p["scale_rewards"], f"one of {', '.join(SCALE_REWARDS)}"
    )
    mcl = p["max_completion_length"]
    _need(_int(mcl) and mcl >= 1, "max_completion_length", mcl, "a whole number, 1 or more")
    _need(_number(p["temperature"]) and p["temperature"] > 0, "temperature", p["temperature"], "a number above 0")
    _need(_number(p["top_p"]) and 0 < p["top_p"] <= 1, "top_p", p["top_p"], "in (0, 1]")
    _need(_int(p["top_k"]) and p["top_k"] >= 0, "top_k", p["top_k"], "a whole number, 0 (no limit) or more")
    weights = p["reward_weights"]
    ok = weights is None or (
        isinstance(weights, list) and weights and all(_number(w) and w >= 0 for w in weights) and any(weights)
    )
    _need(ok, "reward_weights", weights, "null or a non-empty list of numbers, 0 or more, not all 0")


# --- can this host train? -------------------------------------------------------------

TRAINER_MODULES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
TRAIN_EXTRA = "pip install torch==2.13.0 && pip install -e '.[train]' (make run installs it)"


def missing_trainer_modules(python: str) -> list[str]:
    """The trainer's packages that `python` cannot import (found, not imported: cheap)."""
    import importlib.util
    import subprocess
    import sys

    if Path(python).resolve() == Path(sys.executable).resolve():
        return [m for m in TRAINER_MODULES if importlib.util.find_spec(m) is None]
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    try:
        done = subprocess.run(
            [python, "-c", probe, *TRAINER_MODULES], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"(the interpreter {python} does not run: {exc})"]
    if done.returncode != 0:
        return [f"(the interpreter {python} failed: {done.stderr.strip()[-200:]})"]
    return done.stdout.split()


# --- the config file the parent writes ------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    method: str
    base_hf_dir: Path
    output_dir: Path
    dataset_path: Path
    dataset_kind: str
    params: dict  # resolved
    rubric: dict | None = None
    triton_url: str | None = None
    judge_concurrency: int = 8
    # Reviewers inside the RL step (GRPO): {"share", "deadline_s", "folder"}; None: the judge alone.
    live_review: dict | None = None
    # "auto" (a GPU when torch sees one), "cpu" or "cuda": settings.TRAIN_DEVICE.
    device: str = "auto"

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def hf_dir(self) -> Path:
        return self.output_dir / "hf"

    @property
    def cancel_file(self) -> Path:
        return self.output_dir / "CANCEL"


FIELDS = (
    "method",
    "base_hf_dir",
    "output_dir",
    "dataset_path",
    "dataset_kind",
    "params",
    "rubric",
    "triton_url",
    "judge_concurrency",
    "live_review",
    "device",
)
DEVICES = ("auto", "cpu", "cuda")


def load(path: str | Path) -> RunConfig:
    """The run config in a JSON file, checked (not the dataset's rows nor the rubric: see data, rewards)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not readable JSON: {exc}") from None
    return from_dict(raw)


def from_dict(raw: object) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a JSON object")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config field {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    method = raw.get("method")
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of {', '.join(METHODS)}")
    kind = raw.get("dataset_kind")
    if kind != METHODS[method]:
        raise DatasetError(f"dataset_kind {kind!r} does not fit method {method!r}, which trains on {METHODS[method]!r}")
    paths = {}
    for name in ("base_hf_dir", "output_dir", "dataset_path"):
        value = raw.get(name)
        if not isinstance(value, str) or not value or not Path(value).is_absolute():
            raise ConfigError(f"{name} must be an absolute path; got {value!r}")
        paths[name] = Path(value)
    base = paths["base_hf_dir"]
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (base / f).is_file()]
    if missing:
        raise ConfigError(f"base_hf_dir {base} is not a Hugging Face model folder: no {', '.join(missing)}")
    params = resolve(method, raw.get("params"))
    rubric = raw.get("rubric")
    if method == "grpo" and rubric is None:
        raise RubricError("a grpo run needs the rubric its rewards come from")
    url = raw.get("triton_url")
    if url is not None and (not isinstance(url, str) or not url.strip()):
        raise ConfigError(f"triton_url must be host:port; got {url!r}")
    concurrency = raw.get("judge_concurrency", 8)
    if concurrency is None:
        concurrency = 8
    _need(_int(concurrency) and 1 <= concurrency <= 256, "judge_concurrency", concurrency, "a whole number, 1 to 256")
    live = raw.get("live_review")
    if live is not None:
        if method != "grpo":
            raise ConfigError("live_review is a GRPO mode: reviewers score a share of each step's groups")
        check_live_review(live)
        folder = live.get("folder") if isinstance(live, dict) else None
        if not isinstance(folder, str) or not Path(folder).is_absolute():
            raise ConfigError(f"live_review.folder must be an absolute path; got {folder!r}")
    device = raw.get("device") or "auto"
    _need(device in DEVICES, "device", device, "one of " + ", ".join(DEVICES))
    return RunConfig(
        method=method,
        device=device,
        dataset_kind=kind,
        params=params,
        rubric=rubric if method == "grpo" else None,
        triton_url=url,
        judge_concurrency=concurrency,
        live_review=live,
        **paths,
    )


LIVE_DEADLINE_MAX_S = 3600


def check_live_review(live: object) -> dict:
    """`{"share": (0, 1], "deadline_s": 1..3600}` (a train request's, the child's with its folder);
    ConfigError says what is wrong."""
    if not isinstance(live, dict):
        raise ConfigError(f"live_review must be an object with share and deadline_s; got {live!r}")
    unknown = sorted(set(live) - {"share", "deadline_s", "folder"})
    if unknown:
        raise ConfigError(f"unknown live_review field {', '.join(unknown)}; known: share, deadline_s")
    share, deadline = live.get("share"), live.get("deadline_s")
    _need(_number(share) and 0 < share <= 1, "live_review.share", share, "a share in (0, 1]")
    _need(
        _number(deadline) and 1 <= deadline <= LIVE_DEADLINE_MAX_S,
        "live_review.deadline_s",
        deadline,
        f"seconds from 1 to {LIVE_DEADLINE_MAX_S}",
    )
    return live

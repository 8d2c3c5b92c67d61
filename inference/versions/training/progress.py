"""The Trainer callback behind the child's `step` and `checkpoint` events and its cancel check.

Imports transformers: the child loads it only once the input has been checked.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

# What each method logs as its reward: GRPO the weighted sum over its reward functions, DPO the
# mean margin between chosen and rejected implicit rewards; SFT has none.
REWARD_KEYS = {"grpo": ("reward", "reward_std"), "dpo": ("rewards/margins", None), "sft": (None, None)}


class Progress(TrainerCallback):
    def __init__(self, events, *, method: str, cancel, clock: float) -> None:
        self.events = events
        self.method = method
        self.cancel = cancel
        self.clock = clock  # the child's start (time.monotonic)
        self.cancelled = False
        self._last_time = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.monotonic()
        # GRPO's num_tokens is the Trainer state's counter (restored on resume); DPO's and SFT's
        # is the trainer's own, which starts at 0 in every process.
        self._last_tokens = state.num_input_tokens_seen if self.method == "grpo" else 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step < state.max_steps and self.cancel.requested():
            control.should_training_stop = True
            control.should_save = True  # a checkpoint at the step it stopped at, as the others
            self.cancelled = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:  # the summary logged at the end of train()
            return
        now = time.monotonic()
        tokens, tokens_per_s = logs.get("num_tokens"), None
        if tokens is not None and self._last_time is not None and now > self._last_time:
            tokens_per_s = round((tokens - self._last_tokens) / (now - self._last_time), 1)
            self._last_tokens = tokens
        self._last_time = now
        mean_key, std_key = REWARD_KEYS[self.method]
        per_function = None
        if self.method == "grpo":
            per_function = {
                key[len("rewards/") : -len("/mean")]: value
                for key, value in logs.items()
                if key.startswith("rewards/") and key.endswith("/mean")
            }
        self.events.emit(
            "step",
            step=state.global_step,
            max_steps=state.max_steps,
            loss=logs.get("loss"),
            reward_mean=logs.get(mean_key) if mean_key else None,
            reward_std=logs.get(std_key) if std_key else None,
            kl=logs.get("kl"),
            tokens_per_s=tokens_per_s,
            learning_rate=logs.get("learning_rate"),
            rewards=per_function,
            elapsed_s=round(now - self.clock, 3),
            metrics={k: v for k, v in logs.items() if isinstance(v, int | float) or v is None},
        )

    def on_save(self, args, state, control, **kwargs):
        self.events.emit("checkpoint", step=state.global_step)

"""The baseline of bench/bench_train.py: the plain TRL script a user would write for the same
GRPO round (same model, prompts, reward, settings), with nothing of the product around it.

    python bench/plain_grpo.py HF_DIR PROMPTS.jsonl OUTPUT_DIR PARAMS.json
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def main() -> None:
    hf_dir, prompts_path, output_dir, params_path = sys.argv[1:5]
    p = json.loads(Path(params_path).read_text())
    import torch
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": json.loads(line)["prompt"]} for line in Path(prompts_path).read_text().splitlines()]
    name = re.compile("Aria")

    def says_her_name(completions, **kwargs):
        return [1.0 if name.search(c[-1]["content"]) else 0.0 for c in completions]

    args = GRPOConfig(
        output_dir=output_dir,
        max_steps=p["steps"],
        per_device_train_batch_size=p["per_device_batch_size"],
        learning_rate=p["learning_rate"],
        seed=p["seed"],
        data_seed=p["seed"],
        logging_steps=p["logging_steps"],
        save_strategy="steps",
        save_steps=p["save_steps"],
        save_total_limit=2,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=True,
        num_generations=p["num_generations"],
        beta=p["beta"],
        loss_type=p["loss_type"],
        scale_rewards=p["scale_rewards"],
        max_completion_length=p["max_completion_length"],
        temperature=p["temperature"],
    )
    trainer = GRPOTrainer(
        model=transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32),
        reward_funcs=[says_her_name],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=transformers.AutoTokenizer.from_pretrained(hf_dir),
    )
    began = time.monotonic()
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    trainer.save_model(os.path.join(output_dir, "final"))
    print(json.dumps({"train_s": time.monotonic() - began, "first_reward": rewards[0], "last_reward": rewards[-1]}))


if __name__ == "__main__":
    main()

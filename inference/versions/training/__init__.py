"""Training a new model version, in a child process free of Django.

The app writes a config file and runs `<venv python> -m inference.versions.training CONFIG.json`, then
reads the child's stdout line by line:

    config.py    the methods (grpo, dpo, sft), their recorded defaults, `resolve` (checks a run
                 request's params; import-light, the app calls it before queueing) and the
                 config file's fields
    data.py      the dataset file's rows, trimmed to what TRL reads
    rewards.py   GRPO's reward functions from the rubric: one per rule criterion, one for the judge
    child.py     the process: check the input, train with TRL, checkpoint, cancel, save
    progress.py  the Trainer callback behind the step and checkpoint events

The config file (JSON): method, base_hf_dir (the parent version's Hugging Face folder),
output_dir (the child's own), dataset_path (JSONL), dataset_kind, params (as for `resolve`),
rubric (grpo), triton_url (grpo with judge-scored criteria), judge_concurrency, live_review
(grpo, optional: {"share", "deadline_s", "folder"}, reviewers inside the step).

stdout carries only these JSON objects, one a line, each flushed (NaN and inf as null):

    {"event": "started", "max_steps", "resumed_from": step or null, "params": resolved,
     "reward_functions": [names] or null, "reward_weights": [weights] or null}
    {"event": "step", "step", "max_steps", "loss", "reward_mean", "reward_std", "kl",
     "tokens_per_s", "learning_rate", "rewards": {function: mean} or null, "elapsed_s",
     "metrics": {every number TRL logged}}                          for each logged step
    {"event": "checkpoint", "step"}                                 after each checkpoint is saved
    {"event": "review_request", "id", "deadline_s", "groups": [{"prompt", "completions"}]}
                  live_review: a step's groups for reviewers; the parent writes what they
                  scored to folder/<id>.json ({"groups": {index: [{criterion: score} or null]}})
                  by the deadline, and the step waits for it (30 s more at most)
    {"event": "live_review", "id", "groups", "sent", "human", "waited_s"}   the request's outcome
    {"event": "finished", "step", "stopped": "completed" | "cancelled", "hf_dir", "seconds",
     "steps_per_s"}                                                 exit code 0
    {"event": "error", "error": kind, "message"}                    exit code 2 for bad input
                  (kind ConfigError, DatasetError or RubricError), 1 for anything else (the
                  exception's type; the traceback goes to stderr)

A method's missing values are null: `reward_mean` is GRPO's weighted reward, DPO's mean
reward margin, null for SFT; `kl` is GRPO's (with beta > 0). `elapsed_s` counts from the
child's start; `seconds` and `steps_per_s` cover this child's training only (after a resume,
the steps it did itself).

Checkpoints go to output_dir/checkpoints every save_steps (the last two kept); a child started
again on the same config resumes from the newest complete one. Cancel: create
output_dir/CANCEL, or send SIGTERM; training stops at the end of the step it is in (at least
one step runs), saves a checkpoint, and the final weights are saved all the same. The final
weights (LoRA merged in) are a complete Hugging Face folder at output_dir/hf, written to
hf.tmp and renamed.
"""

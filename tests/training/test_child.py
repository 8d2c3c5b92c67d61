"""The training child (`python -m inference.versions.training CONFIG.json`) as the app runs it: a real
subprocess on the shipped tiny model, read line by line. It trains (GRPO's reward rises),
resumes after a SIGKILL from its last checkpoint, stops on a cancel and still saves, trains
DPO and SFT (with LoRA, merged), and refuses bad input before importing anything heavy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inference.errors import BackendUnavailable
from inference.judging import JudgeResult
from inference.versions.training import config, rewards
from inference.versions.training.config import ConfigError, RubricError
from tests.concurrency import InFlight

REPO = Path(__file__).resolve().parents[2]
BASE_HF = REPO / "inference" / "weights" / "tiny-qwen3" / "hf"
DATA = Path(__file__).parent / "data"
HF_FILES = {f.name for f in BASE_HF.iterdir()}
# A substring rule: the tiny model's vocabulary has "Aria" as one token, and a random model
# follows it with letters as often as not, so the keywords kind (whole words) rarely fires.
SAYS_ARIA = {"key": "says-aria", "scale_min": 0, "scale_max": 1, "rule": {"kind": "regex", "pattern": "Aria"}}
RUBRIC = {"slug": "aria-voice", "version": 1, "name": "Aria voice", "criteria": [SAYS_ARIA]}
QUICK_S = 5.0  # bad input is refused before torch or TRL are imported
# One torch thread per child: the tiny model's ops are too small to split, and two children
# on two cores each spinning two threads ran GRPO 4x slower (0.8 steps/s instead of 3.4).
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _await(coroutine):
    """Await an async reward function as TRL does: on an event loop of its own, in a thread of
    its own (this thread may already run a loop: the browser tests' Playwright leaves one)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _config(tmp_path: Path, method: str = "grpo", **fields) -> Path:
    kind = config.METHODS[method]
    raw = {
        "method": method,
        "base_hf_dir": str(BASE_HF),
        "output_dir": str(tmp_path / "out"),
        "dataset_path": str(DATA / f"{kind}.jsonl"),
        "dataset_kind": kind,
        "params": {},
        **({"rubric": RUBRIC} if method == "grpo" else {}),
        **fields,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


class Child:
    """The child process, its events read by a thread as they come; stderr to a file."""

    def __init__(self, config_path: Path) -> None:
        self.stderr_path = config_path.parent / f"stderr-{time.monotonic_ns()}.log"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inference.versions.training", str(config_path)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env=CHILD_ENV,
                text=True,
            )
        self.events: list[dict] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(json.loads(line))  # anything but JSON on stdout fails here
        self._queue.put(None)

    def next_event(self, timeout: float = 120) -> dict | None:
        event = self._queue.get(timeout=timeout)
        if event is not None:
            self.events.append(event)
        return event

    def until(self, predicate, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            assert event is not None, f"the child ended first: {self.events[-3:]}\n{self.stderr()[-2000:]}"
            if predicate(event):
                return event

    def finish(self, timeout: float = 120) -> int:
        while self.next_event(timeout) is not None:
            pass
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]


def _run(config_path: Path, timeout: float = 120) -> Child:
    child = Child(config_path)
    code = child.finish(timeout)
    assert code == 0, f"exit {code}: {child.events[-2:]}\n{child.stderr()[-3000:]}"
    return child


def _complete_hf(hf_dir: Path) -> None:
    assert {f.name for f in hf_dir.iterdir()} == HF_FILES
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (hf_dir / name).read_bytes() == (BASE_HF / name).read_bytes()
    assert not (hf_dir.parent / "hf.tmp").exists()


# --- training ---------------------------------------------------------------------------


GRPO_PARAMS = {"steps": 40, "save_steps": 10}


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory) -> Child:
    """One uninterrupted GRPO run of 40 steps, for its events and as the reference of the resume."""
    return _run(_config(tmp_path_factory.mktemp("grpo"), params=GRPO_PARAMS))


@pytest.mark.slow
def test_grpo_raises_the_rule_reward_and_saves_a_complete_hf_folder(grpo_run):
    kinds = [e["event"] for e in grpo_run.events]
    assert kinds == ["started"] + (["step"] * 10 + ["checkpoint"]) * 4 + ["finished"]
    started, steps, finished = grpo_run.events[0], grpo_run.of("step"), grpo_run.events[-1]
    assert started["resumed_from"] is None and started["max_steps"] == 40
    assert started["params"] == {**config.DEFAULTS["grpo"], **GRPO_PARAMS}
    assert (started["reward_functions"], started["reward_weights"]) == (["rule_says-aria"], [1.0])
    assert [s["step"] for s in steps] == list(range(1, 41))
    assert [c["step"] for c in grpo_run.of("checkpoint")] == [10, 20, 30, 40]
    first, last = (sum(s["reward_mean"] for s in part) / 8 for part in (steps[:8], steps[-8:]))
    assert last > first + 0.3, (first, last)
    step = steps[-1]
    assert step["rewards"] == {"rule_says-aria": step["reward_mean"]}
    assert step["kl"] > 0 and step["tokens_per_s"] > 0 and step["learning_rate"] > 0
    assert step["metrics"]["reward"] == step["reward_mean"] and step["elapsed_s"] > steps[0]["elapsed_s"]
    assert finished["step"] == 40 and finished["stopped"] == "completed" and finished["steps_per_s"] > 0
    assert finished["device"] == "cpu" and "peak_gpu_memory_mb" not in finished  # "auto", and no GPU here
    hf = Path(finished["hf_dir"])
    assert hf.name == "hf" and hf.is_absolute()
    _complete_hf(hf)
    assert (hf / "model.safetensors").read_bytes() != (BASE_HF / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_a_killed_child_resumes_from_its_last_checkpoint_to_the_same_weights(tmp_path, grpo_run):
    path = _config(tmp_path, params=GRPO_PARAMS)
    child = Child(path)
    child.until(lambda e: e["event"] == "checkpoint" and e["step"] == 10)
    child.proc.send_signal(signal.SIGKILL)
    assert child.proc.wait(30) == -signal.SIGKILL

    again = _run(path)
    started = again.events[0]
    assert started["event"] == "started" and started["resumed_from"] == 10
    assert [s["step"] for s in again.of("step")] == list(range(11, 41))
    assert again.events[-1]["step"] == 40 and again.events[-1]["stopped"] == "completed"
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-30",
        "checkpoint-40",
    ]
    _complete_hf(tmp_path / "out" / "hf")
    # Optimizer, scheduler and RNG states came back with the weights: the run goes on exactly
    # as the uninterrupted one did.
    assert [s["loss"] for s in again.of("step")] == [s["loss"] for s in grpo_run.of("step")][10:]
    trained = Path(grpo_run.events[-1]["hf_dir"]) / "model.safetensors"
    assert (tmp_path / "out" / "hf" / "model.safetensors").read_bytes() == trained.read_bytes()


@pytest.mark.slow
def test_a_cancel_file_stops_it_at_that_step_with_its_weights_saved(tmp_path):
    child = Child(_config(tmp_path, params={"steps": 1000}))
    child.until(lambda e: e["event"] == "step" and e["step"] >= 3)
    (tmp_path / "out" / "CANCEL").touch()
    assert child.finish() == 0
    finished, last_step = child.events[-1], child.of("step")[-1]
    assert finished["event"] == "finished" and finished["stopped"] == "cancelled"
    assert 3 <= finished["step"] == last_step["step"] < 1000
    assert child.events[-2] == {"event": "checkpoint", "step": finished["step"]}
    _complete_hf(tmp_path / "out" / "hf")


@pytest.mark.slow
def test_sigterm_cancels_like_the_file(tmp_path):
    child = Child(_config(tmp_path, "dpo", params={"steps": 1000}))
    child.until(lambda e: e["event"] == "step" and e["step"] >= 2)
    child.proc.send_signal(signal.SIGTERM)
    assert child.finish() == 0
    assert child.events[-1]["stopped"] == "cancelled" and child.events[-1]["step"] < 1000
    _complete_hf(tmp_path / "out" / "hf")


@pytest.mark.slow
def test_dpo_trains_and_reports_its_margins(tmp_path):
    child = _run(_config(tmp_path, "dpo", params={"steps": 3, "per_device_batch_size": 4}))
    started, steps, finished = child.events[0], child.of("step"), child.events[-1]
    assert started["params"]["beta"] == 0.1 and started["reward_functions"] is None
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert steps[-1]["reward_mean"] == steps[-1]["metrics"]["rewards/margins"]
    assert steps[-1]["kl"] is None and steps[-1]["rewards"] is None and steps[-1]["loss"] > 0
    assert finished["stopped"] == "completed" and finished["step"] == 3
    _complete_hf(Path(finished["hf_dir"]))


@pytest.mark.slow
def test_sft_with_lora_saves_merged_weights_that_transformers_loads(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    child = _run(_config(tmp_path, "sft", params={"steps": 3, "lora": True, "per_device_batch_size": 4}))
    finished = child.events[-1]
    assert finished["stopped"] == "completed" and finished["step"] == 3
    steps = child.of("step")
    assert steps[-1]["reward_mean"] is None and steps[-1]["loss"] > 0 and steps[-1]["tokens_per_s"] > 0
    hf = Path(finished["hf_dir"])
    _complete_hf(hf)
    trained, base = load_file(hf / "model.safetensors"), load_file(BASE_HF / "model.safetensors")
    assert set(trained) == set(base) and not [k for k in trained if "lora" in k]
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    model = AutoModelForCausalLM.from_pretrained(hf)
    assert not [k for k in model.state_dict() if "lora" in k]


def test_an_unexpected_failure_is_an_error_event_with_the_traceback_on_stderr(tmp_path):
    (tmp_path / "a-file").write_text("")
    child = Child(_config(tmp_path, "sft", output_dir=str(tmp_path / "a-file" / "out")))
    assert child.finish() == 1
    (error,) = child.events
    assert error["event"] == "error" and error["error"] == "NotADirectoryError" and "a-file" in error["message"]
    assert "Traceback" in child.stderr()


# --- bad input: refused at once, exit 2 -------------------------------------------------


def _refused(config_path: Path) -> dict:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "inference.versions.training", str(config_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert time.monotonic() - began < QUICK_S
    assert done.returncode == 2, done.stderr
    (event,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert event["event"] == "error"
    return event


def test_a_missing_dataset_file_is_refused(tmp_path):
    event = _refused(_config(tmp_path, dataset_path=str(tmp_path / "gone.jsonl")))
    assert event["error"] == "DatasetError" and "gone.jsonl does not exist" in event["message"]


def test_a_line_that_is_not_json_is_refused_by_its_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = (DATA / "sft.jsonl").read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1], '{"messages": [', lines[2]]) + "\n")
    event = _refused(_config(tmp_path, "sft", dataset_path=str(bad)))
    assert event["error"] == "DatasetError" and "bad.jsonl line 3 is not JSON" in event["message"]


def test_a_row_without_the_methods_fields_is_refused(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    row = json.loads((DATA / "dpo.jsonl").read_text().splitlines()[0])
    del row["rejected"]
    bad.write_text(json.dumps(row) + "\n")
    event = _refused(_config(tmp_path, "dpo", dataset_path=str(bad)))
    assert event["error"] == "DatasetError" and "line 1 has no rejected" in event["message"]


def test_a_dataset_kind_that_does_not_fit_the_method_is_refused(tmp_path):
    event = _refused(_config(tmp_path, "dpo", dataset_kind="sft", dataset_path=str(DATA / "sft.jsonl")))
    assert event["error"] == "DatasetError"
    assert event["message"] == "dataset_kind 'sft' does not fit method 'dpo', which trains on 'dpo'"


def test_an_empty_dataset_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    event = _refused(_config(tmp_path, "sft", dataset_path=str(empty)))
    assert event["error"] == "DatasetError" and "has no rows" in event["message"]


def test_a_rubric_with_no_usable_criterion_is_refused(tmp_path):
    rubric = {**RUBRIC, "criteria": [{**SAYS_ARIA, "weight": 0}]}
    event = _refused(_config(tmp_path, rubric=rubric))
    assert event["error"] == "RubricError" and "no criterion a reward can use" in event["message"]


def test_judge_criteria_without_a_triton_url_are_refused(tmp_path):
    voice = {"key": "voice", "scale_min": 1, "scale_max": 5}
    event = _refused(_config(tmp_path, rubric={**RUBRIC, "criteria": [SAYS_ARIA, voice]}))
    assert event["error"] == "RubricError" and "voice are scored by the judge" in event["message"]


def test_an_unknown_param_is_refused_naming_it(tmp_path):
    event = _refused(_config(tmp_path, params={"stepz": 3}))
    assert event["error"] == "ConfigError"
    assert event["message"].startswith("unknown parameter stepz for grpo; known: steps, learning_rate")


def test_an_unknown_device_is_refused_naming_the_choices(tmp_path):
    event = _refused(_config(tmp_path, device="tpu"))
    assert event["error"] == "ConfigError"
    assert event["message"] == "device must be one of auto, cpu, cuda; got 'tpu'"


def test_a_gpu_asked_for_where_torch_sees_none_is_refused(tmp_path):
    """TRAIN_DEVICE=cuda on a host without a GPU: refused before the model loads, not trained on the CPU."""
    import torch

    assert not torch.cuda.is_available()  # this suite's machines have no GPU
    done = subprocess.run(
        [sys.executable, "-m", "inference.versions.training", str(_config(tmp_path, device="cuda"))],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1 and [e["event"] for e in events] == ["started", "error"]
    assert (
        events[-1]["error"] == "ConfigError" and "TRAIN_DEVICE is cuda, but torch sees no GPU" in events[-1]["message"]
    )
    assert not (tmp_path / "out" / "hf").exists()


def test_the_child_checks_its_input_without_torch_trl_or_django():
    heavy = ("torch", "transformers", "trl", "datasets", "peft", "django", "tritonclient")
    code = (
        "import sys, inference.versions.training.child, inference.versions.training.config; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


# --- config.resolve ---------------------------------------------------------------------


def test_resolve_fills_in_the_recorded_defaults():
    grpo = config.resolve("grpo", {"steps": 5})
    assert grpo == {**config.DEFAULTS["grpo"], "steps": 5}
    assert (grpo["beta"], grpo["loss_type"], grpo["scale_rewards"], grpo["num_generations"]) == (
        0.04,
        "dapo",
        "group",
        8,
    )
    assert config.resolve("dpo", None)["beta"] == 0.1
    assert config.resolve("sft", {})["steps"] == 20
    assert config.DEFAULTS["grpo"]["steps"] == 40  # resolve never changes the defaults


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("grpo", {"steps": 0}, "steps must be a whole number, 1 or more; got 0"),
        ("grpo", {"steps": 2.5}, "steps must be a whole number"),
        ("grpo", {"steps": True}, "steps must be a whole number"),
        ("grpo", {"learning_rate": 0}, "learning_rate must be in (0, 1]"),
        ("grpo", {"num_generations": 1}, "num_generations must be a whole number, 2 or more"),
        ("grpo", {"num_generations": 3}, "per_device_batch_size (8) must be a multiple of num_generations (3)"),
        ("grpo", {"beta": -0.1}, "beta must be a number, 0 or more"),
        ("grpo", {"loss_type": "ppo"}, "loss_type must be one of grpo, dr_grpo, dapo"),
        ("grpo", {"scale_rewards": True}, "scale_rewards must be one of group, batch, none"),
        ("grpo", {"temperature": 0}, "temperature must be a number above 0"),
        ("grpo", {"reward_weights": []}, "reward_weights must be null or a non-empty list"),
        ("grpo", {"max_length": 64}, "unknown parameter max_length for grpo"),
        ("dpo", {"beta": 0}, "beta must be a number above 0"),
        ("dpo", {"num_generations": 8}, "unknown parameter num_generations for dpo"),
        ("sft", {"lora": 1}, "lora must be true or false"),
        ("sft", {"seed": -1}, "seed must be a whole number, 0 to 2**32 - 1"),
        ("sft", {"max_length": 4}, "max_length must be a whole number, 8 or more"),
        ("kto", {}, "method 'kto' is not one of grpo, dpo, sft"),
        ("sft", [], "params must be an object"),
    ],
)
def test_resolve_refuses_what_trl_would_not_take(method, params, message):
    with pytest.raises(ConfigError) as refused:
        config.resolve(method, params)
    assert message in str(refused.value)
    assert isinstance(refused.value, ValueError)


# --- the rewards ------------------------------------------------------------------------


def test_reward_weights_follow_the_rubric_and_sum_to_its_overall_score():
    criteria = [
        {**SAYS_ARIA, "weight": 2},
        {
            "key": "short",
            "scale_min": 1,
            "scale_max": 5,
            "weight": 1,
            "rule": {"kind": "length", "unit": "words", "max": 3},
        },
        {"key": "voice", "scale_min": 1, "scale_max": 5, "weight": 1},
        {"key": "warmth", "scale_min": 1, "scale_max": 5, "weight": 0},
    ]
    plan = rewards.plan({**RUBRIC, "criteria": criteria}, triton_url="judge:8001", reward_weights=None)
    assert plan.names == ["rule_says-aria", "rule_short", "judge"]
    assert plan.weights == [0.5, 0.25, 0.25]
    assert [c["key"] for c in plan.judge_rubric["criteria"]] == ["voice"]
    funcs = rewards.build(plan, triton_url=None, concurrency=2, backend=FakeJudge({"voice": 5}))
    completions = [[{"role": "assistant", "content": "Aria is here."}], [{"role": "assistant", "content": "No."}]]
    prompts = [[{"role": "user", "content": "Hi"}]] * 2
    assert funcs[0](prompts=prompts, completions=completions) == [1.0, 0.0]
    assert funcs[1](prompts=prompts, completions=completions) == [1.0, 1.0]
    assert _await(funcs[2](prompts=prompts, completions=completions)) == [1.0, 1.0]


def test_reward_weights_given_must_match_the_functions():
    with pytest.raises(ConfigError, match="reward_weights has 2 weights but the rubric gives 1"):
        rewards.plan(RUBRIC, triton_url=None, reward_weights=[1, 1])
    assert rewards.plan(RUBRIC, triton_url=None, reward_weights=[3]).weights == [3.0]


def test_a_broken_rule_is_a_rubric_error():
    bad = {**SAYS_ARIA, "rule": {"kind": "regex", "pattern": "(a+)+"}}
    with pytest.raises(RubricError, match="says-aria: rule pattern: nests an unbounded repeat"):
        rewards.plan({**RUBRIC, "criteria": [bad]}, triton_url=None, reward_weights=None)


class FakeJudge:
    """A judge backend standing in for Triton: fixed scores, or BackendUnavailable for texts
    containing "fail"; it records how many calls were in flight at once."""

    def __init__(self, scores: dict, meet: int | None = None) -> None:
        self.scores = scores
        self.in_flight = InFlight(meet)

    def judge(self, request):
        with self.in_flight.call():
            pass
        if "fail" in request.completion:
            raise BackendUnavailable("judge down")
        assert [c["key"] for c in request.rubric["criteria"]] == list(self.scores)
        return JudgeResult(scores=self.scores, rationale="", raw="")


def test_the_judge_reward_scores_a_batch_concurrently_and_gives_none_when_it_cannot():
    judge = FakeJudge({"voice": 4, "warmth": 2}, meet=4)  # its calls wait until four are in flight
    rubric = {
        "slug": "v",
        "criteria": [
            {"key": "voice", "scale_min": 1, "scale_max": 5, "weight": 3},
            {"key": "warmth", "scale_min": 1, "scale_max": 5, "weight": 1},
        ],
    }
    plan = rewards.plan(rubric, triton_url="judge:8001", reward_weights=None)
    (func,) = rewards.build(plan, triton_url=None, concurrency=4, backend=judge)
    texts = ["a", "b", "fail", "c", "d", "e", "f", "g"]
    scored = _await(func(prompts=["Hi"] * 8, completions=texts))
    assert scored == [0.625] * 2 + [None] + [0.625] * 5  # (3 * 0.75 + 1 * 0.25) / 4
    assert judge.in_flight.most == 4


@pytest.mark.slow
def test_grpo_scores_judge_criteria_through_triton(tmp_path, triton_url):
    voice = {"key": "voice", "description": "Sounds like Aria", "scale_min": 1, "scale_max": 5}
    params = {"steps": 2, "num_generations": 4, "per_device_batch_size": 4, "save_steps": 2}
    rubric = {**RUBRIC, "criteria": [SAYS_ARIA, voice]}
    child = _run(_config(tmp_path, params=params, rubric=rubric, triton_url=triton_url, judge_concurrency=4))
    assert child.events[0]["reward_functions"] == ["rule_says-aria", "judge"]
    assert child.events[0]["reward_weights"] == [0.5, 0.5]
    for step in child.of("step"):
        assert 0 <= step["rewards"]["judge"] <= 1  # the judge scored the completions (None would mean none)
    assert child.events[-1]["stopped"] == "completed"


def test_reviewers_inside_the_step_reward_the_groups_they_scored_whole_and_the_judge_the_rest(tmp_path):
    """The live judge reward alone (its parent stood in for by a thread that answers): of the
    two groups sent, the one reviewers scored whole takes their scores; the one they scored in
    part, and the one not sent, keep the judge's (no group mixes the two)."""
    voice = {"key": "voice", "scale_min": 1, "scale_max": 5, "weight": 1}
    judge_rubric = {**RUBRIC, "criteria": [voice]}
    events = []
    live = rewards.LiveReview(share=0.6, deadline_s=5, folder=tmp_path, emit=lambda e, **f: events.append((e, f)))

    def parent():
        while not events:
            time.sleep(0.01)
        _, request = events[0]
        assert [len(g["completions"]) for g in request["groups"]] == [2, 2]  # 3 groups, 2 sent
        answer = {"groups": {"0": [{"voice": 1}, {"voice": 2}], "1": [{"voice": 5}, None]}}
        (tmp_path / f"{request['id']}.json").write_text(json.dumps(answer))

    answering = threading.Thread(target=parent)
    answering.start()
    reward = rewards.live_judge_reward(judge_rubric, FakeJudge({"voice": 5}), concurrency=2, live=live)
    prompts = [[{"role": "user", "content": q}] for q in ("a", "a", "b", "b", "c", "c")]
    completions = [[{"role": "assistant", "content": f"answer {i}"}] for i in range(6)]
    got = _await(reward(prompts=prompts, completions=completions))
    answering.join()
    assert got == [0.0, 0.25, 1.0, 1.0, 1.0, 1.0]  # group a: the reviewers' 1 and 2; b and c: the judge's 5
    assert events[-1][0] == "live_review"
    assert {k: events[-1][1][k] for k in ("groups", "sent", "human")} == {"groups": 3, "sent": 2, "human": 1}


def test_without_an_answer_by_the_deadline_the_judge_scores_every_group(tmp_path):
    events = []
    live = rewards.LiveReview(
        share=1.0, deadline_s=1, folder=tmp_path, emit=lambda e, **f: events.append((e, f)), grace_s=0.2
    )
    judge_rubric = {**RUBRIC, "criteria": [{"key": "voice", "scale_min": 1, "scale_max": 5, "weight": 1}]}
    reward = rewards.live_judge_reward(judge_rubric, FakeJudge({"voice": 3}), concurrency=2, live=live)
    got = _await(
        reward(
            prompts=[[{"role": "user", "content": "a"}]] * 2, completions=[[{"role": "assistant", "content": "x"}]] * 2
        )
    )
    assert got == [0.5, 0.5] and events[-1][1]["human"] == 0 and events[-1][1]["waited_s"] >= 1

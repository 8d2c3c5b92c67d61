"""Model output holding the NUL character (\\u0000), which a byte-level tokenizer can decode to and
an OpenAI-compatible server can send: completions, judge answers and error messages are stored
with U+FFFD in its place, the same on SQLite and PostgreSQL (which stores no NUL in text or
jsonb: the write failed there, losing the completion as a failed item). Requests bringing NUL
in are refused instead (tests/api/test_nul_text.py, tests/labelling/test_nul_pages.py)."""

from inference import execution, tasks
from inference.engine import Completion
from inference.errors import InvalidRequest, JudgeOutputError
from inference.judging import JudgeResult
from labelling.errors import holds_nul
from labelling.models import Generation, GeneratorVersion, Judgment, PipelineRun
from labelling.records import services as record_services
from labelling.runs import services as run_services
from labelling.versions.training import services as training_services

NUL, FFFD = "\x00", "\ufffd"


def _stored(*rows) -> list:
    """Each row as the database holds it (read afresh)."""
    return [type(row).objects.get(pk=row.pk) for row in rows]


def test_a_generation_and_its_judgments_are_stored_with_the_replacement_character(world):
    group = world["made"][("a", 0)].group
    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    generation = record_services.generation_record(
        group=group,
        index=3,
        messages=[{"role": "user", "content": "What do you see?"}],
        raw_text=f"<think>we{NUL}igh</think>The l{NUL}amp.",
        producer=None,
        run=world["run"],
        finish_reason=f"stop{NUL}",
    )
    judged = record_services.judgment_record(
        generation=generation,
        rubric=world["rubric"],
        source=Judgment.Source.JUDGE,
        scores={"voice": 4},
        rationale=f"Stea{NUL}dy.",
        raw_output=f'{{"voice": 4}}{NUL}',
        producer=judge,
    )
    failed = record_services.judgment_record_failure(
        generation=generation,
        rubric=world["rubric"],
        producer=judge,
        raw_output=f"pretty {NUL}good",
        error=f"no score for 'v{NUL}oice'",
    )
    generation, judged, failed = _stored(generation, judged, failed)
    assert (generation.text, generation.raw_text, generation.thinking, generation.finish_reason) == (
        f"The l{FFFD}amp.",
        f"<think>we{FFFD}igh</think>The l{FFFD}amp.",
        f"we{FFFD}igh",
        f"stop{FFFD}",
    )
    assert generation.think_valid
    assert (judged.rationale, judged.raw_output, judged.status) == (f"Stea{FFFD}dy.", f'{{"voice": 4}}{FFFD}', "ok")
    assert (failed.raw_output, failed.error) == (f"pretty {FFFD}good", f"no score for 'v{FFFD}oice'")


def test_a_failed_run_and_a_failed_version_keep_their_messages_with_the_replacement_character(world):
    run = execution.run_claim(run_id=world["run"].pk)
    execution.run_fail(
        run_id=run.pk, execution=run.execution, error={"item": None, "error": "E", "message": f"x{NUL}y"}
    )
    run.refresh_from_db()
    assert (run.status, run.errors[-1]["message"]) == (PipelineRun.Status.FAILED, f"x{FFFD}y")
    version = GeneratorVersion.objects.create(number=7, status=GeneratorVersion.Status.TRAINING)
    training_services.version_status(version=version, status=GeneratorVersion.Status.FAILED, error=f"stderr: {NUL}")
    assert GeneratorVersion.objects.get(pk=version.pk).error == f"stderr: {FFFD}"


class NulBackend:
    """Answers with NUL everywhere a model's text goes: prompt 0's completions are judged, prompt
    1's judge answer will not parse, prompt 2 is refused by the generator."""

    name = "nul"

    def generate(self, request, on_delta=None):
        question = request.messages[-1]["content"]
        if question.startswith("Question 2"):
            raise InvalidRequest(f"the endpoint said: bad by{NUL}te")
        return [Completion(i, f"<think>hm{NUL}</think>Lig{NUL}ht {i}", "stop", 3, 3) for i in range(request.params.n)]

    def judge(self, request):
        if request.messages[-1]["content"].startswith("Question 1"):
            raise JudgeOutputError(f"no score for 'hel{NUL}pful'", raw=f"so{NUL}so")
        return JudgeResult(
            scores={"in_character": 4, "helpful": 3}, rationale=f"Wr{NUL}y.", raw=f'{{"in_character": 4}}{NUL}'
        )

    def close(self):
        pass


def test_a_run_whose_backend_answers_with_nul_keeps_every_completion(story):
    character, prompt_set, rubric = story(3)
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, group_size=2, enqueue=False
    )
    assert tasks.execute(run.pk, backend=NulBackend()) == PipelineRun.Status.PARTIAL
    run.refresh_from_db()
    assert (run.done_items, run.failed_items) == (2, 1)  # the refused prompt only
    assert [(e["error"], e["message"]) for e in run.errors] == [
        ("InvalidRequest", f"the endpoint said: bad by{FFFD}te")
    ]
    made = Generation.objects.filter(group__run=run)
    assert sorted(made.values_list("text", "thinking")) == [(f"Lig{FFFD}ht {i}", f"hm{FFFD}") for i in (0, 0, 1, 1)]
    judged = Judgment.objects.filter(run=run)
    failed = ("failed", "", f"so{FFFD}so", f"no score for 'hel{FFFD}pful'")
    scored = ("ok", f"Wr{FFFD}y.", f'{{"in_character": 4}}{FFFD}', "")
    assert sorted(judged.values_list("status", "rationale", "raw_output", "error")) == [failed, failed, scored, scored]
    rows = [*made.values(), *judged.values(), *PipelineRun.objects.filter(pk=run.pk).values()]
    assert not holds_nul(rows)

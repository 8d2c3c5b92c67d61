"""A judge answer that will not parse: asked again, then stored as a failed judgment with
its raw text; the run goes on. The generator is the real in-process engine; only the
judge is a stand-in, since the project's own judge cannot produce such an answer."""

from inference.backends.inprocess import InProcessBackend
from inference.errors import JudgeOutputError
from inference.tasks import execute
from labelling.models import Judgment, PipelineRun
from tests.factories import generate_run
from tests.triton_fixture import TINY_MODEL


class UnparseableJudge(InProcessBackend):
    def __init__(self):
        super().__init__(TINY_MODEL)
        self.judge_calls = 0

    def judge(self, request):
        self.judge_calls += 1
        raise JudgeOutputError("the judge gave no score for 'in_character'", raw="I'd say... pretty good?")


def test_unparseable_judge_answers_are_recorded_as_failed_judgments(story):
    character, prompt_set, rubric = story(2)
    run = generate_run(character=character, prompt_set=prompt_set, rubric=rubric, group_size=2)
    backend = UnparseableJudge()
    assert execute(run.pk, backend=backend) == PipelineRun.Status.SUCCEEDED
    failed = Judgment.objects.filter(run=run, status=Judgment.Status.FAILED)
    assert failed.count() == 4  # every completion: one failed judgment, none dropped
    assert {j.raw_output for j in failed} == {"I'd say... pretty good?"}
    assert all("no score" in j.error for j in failed)
    assert backend.judge_calls == 4 * 3  # the first answer and two more tries each

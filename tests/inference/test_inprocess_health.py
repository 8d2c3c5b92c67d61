"""In process, a model is ready when it answers, not when its folder has a genai_config.json."""

import shutil

from inference.backends.inprocess import InProcessBackend
from tests.triton_fixture import TINY_MODEL


def test_a_model_that_answers_is_ready():
    backend = InProcessBackend(TINY_MODEL)
    try:
        health = backend.health()
        assert health.models == {"qwen3": True, "judge": True} and health.detail == ""
        assert health.engines["qwen3"]["requests"] >= 1  # it was asked, through the engine
    finally:
        backend.close()


def test_a_folder_whose_weights_do_not_load_is_not_ready_and_says_why(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(TINY_MODEL, broken, ignore=shutil.ignore_patterns("hf"))
    (broken / "model.onnx.data").write_bytes(b"not weights")
    backend = InProcessBackend(TINY_MODEL, broken, generator_dirs=None)
    try:
        health = backend.health()
        assert health.models == {"qwen3": True, "judge": False} and not health.ready
        assert health.detail.startswith("judge: it does not answer (")
        assert not InProcessBackend(tmp_path / "absent").health().ready  # and no folder at all
    finally:
        backend.close()

"""A real tritonserver for the tests: the bundled CPU build on free loopback ports.

Session-scoped and started on first use. If it cannot start, every test that
needs it fails with the server's log; nothing is skipped.
"""

from pathlib import Path

import pytest

from inference.triton_server import TritonProcess, free_port

TINY_MODEL = Path(__file__).resolve().parent.parent / "inference" / "weights" / "tiny-qwen3"


_current: list[pytest.Item] = []  # the test being set up or run


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _current[:] = [item]


def start_triton(work_dir: Path, **kwargs) -> TritonProcess:
    # `make test-fast` deselects the triton marker: a test that starts a server without it
    # would make the fast run slow, so it fails here instead (tests/conftest.py marks those
    # using the fixtures below; one calling start_triton() itself needs @pytest.mark.triton).
    if _current and _current[0].get_closest_marker("triton") is None:
        raise AssertionError(f"{_current[0].nodeid} starts a tritonserver: mark it @pytest.mark.triton")
    return TritonProcess(
        work_dir=work_dir,
        grpc_port=free_port(),
        metrics_port=free_port(),
        generator_dir=TINY_MODEL,
        judge_dir=TINY_MODEL,
        **kwargs,
    ).start(timeout_s=120)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory):
    server = start_triton(tmp_path_factory.mktemp("triton"))
    yield server
    server.stop()


@pytest.fixture
def triton_url(triton_server) -> str:
    if not triton_server.alive():  # a test that killed it: bring it back for the next
        triton_server.start(timeout_s=120)
    return triton_server.url

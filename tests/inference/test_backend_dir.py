"""The Python backend's folder that `manage.py triton` prepares under DATA_DIR, on the shared
volume: a second start must succeed while another tritonserver still runs the stub copied there
(a Triton host beside it on the same volume, or the previous one not yet gone)."""

import shutil
import subprocess

from inference.triton_server import prepare_backend_dir, wheel_dir


def test_the_backend_is_prepared_again_while_a_stub_runs_from_it(tmp_path):
    stub = tmp_path / "python" / "triton_python_backend_stub"
    stub.parent.mkdir()
    shutil.copy2("/bin/sleep", stub)  # an executable at the stub's path, running
    running = subprocess.Popen([str(stub), "30"])
    try:
        prepare_backend_dir(tmp_path)  # writing into the running file fails: "Text file busy"
    finally:
        running.kill()
        running.wait()
    wheel_stubs = wheel_dir() / "python_backend_stubs"
    assert any(stub.read_bytes() == s.read_bytes() for s in wheel_stubs.glob("*/triton_python_backend_stub"))
    assert stub.stat().st_mode & 0o111  # still executable
    assert sorted(p.name for p in stub.parent.iterdir() if p.name.startswith(".")) == []  # no partial copy left

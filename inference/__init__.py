"""Model access and pipelines: backends, the Triton server, generation and judging."""

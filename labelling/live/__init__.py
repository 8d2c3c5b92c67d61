"""Live updates: one broadcaster that services and pipelines publish through after commit, the
websocket consumers that push rendered partials for htmx to swap, and their routes."""

"""Pipeline runs, as users start, watch, cancel and resume them, and what runs record: groups,
completions (think tags split out and checked) and judge judgments. Runs are executed by
`inference`, reached through the one seam in `executor`."""

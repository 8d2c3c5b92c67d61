"""What runs, imports and reviewers record, whoever writes: groups, completions and judgments
(`services`), and each group's review-queue state (`queue_state`)."""

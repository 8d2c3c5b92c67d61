"""Human review: the queue and its ordering policies, leased claims, submit / skip / undo /
rewrite, the stored queue state per group, the review pages, and agreement statistics."""

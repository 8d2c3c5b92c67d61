"""Dataset versions: filters, rewards, group-relative advantages and trainer-ready files.

A version is built from a filter over groups, written once as JSONL under
MEDIA_ROOT/datasets/ with its sha256, row count and stats, and never changed.
Rows stream from the database in chunks (constant memory), in a fixed order with
fixed float rounding and sorted keys, so the same filter over the same data gives
the same bytes. Field names are TRL's (docs/datasets.md).

Reward policy: a completion's reward is the mean weighted score (0..1, rubric
weights) of its human judgments when it has any, else of the judge's latest
successful judgment; a completion with neither has no reward and is left out of
rewarded formats. Advantages are (r - mean) / (std + eps) within a group.
"""

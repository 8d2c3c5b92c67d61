"""What runs are made of: characters, rubrics (versioned, frozen once used), prompt sets and
prompts, and importing them (with completion groups made elsewhere) from JSONL, YAML or JSON,
all or nothing; Architext floor plans as decision-puzzle prompt sets."""

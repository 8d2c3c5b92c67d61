"""The domain and the review UI: characters, rubrics, prompts, generations, judgments, datasets."""

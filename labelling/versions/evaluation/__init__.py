"""Did the new version get better? Paired comparisons of two generator versions on the same
prompts, with the prompt as the unit of analysis: `stats` (Django-free) holds the arithmetic."""

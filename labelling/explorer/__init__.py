"""The data explorer: a run's (or a dataset version's) completions with their judge and human
scores, reward and advantage, filtered, sorted and paged by key; a group's page; a frozen
version's file, row by row."""

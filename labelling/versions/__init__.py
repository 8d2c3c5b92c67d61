"""A generator version's lifecycle, the human side: one room for everything from the request to
the verdict.

    generators/  the versions: lineage, the current one, the one a run pins, make current /
                 retire, the /models/ page
    training/    train runs: the request (checked, defaults recorded, the version it will make
                 registered), logged steps, the version's status, the curve charts
    evaluation/  did it get better: evaluations (two pinned generate runs), blind A/B pairs,
                 verdicts on the lineage, the evaluation page

Training, converting and serving a version are the model side's (`inference.versions`)."""

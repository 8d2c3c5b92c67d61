"""The human side of Shaping: the domain (models.py, admin.py) and every page, API route and
export of it, one sub-package per domain:

    catalogue/   characters, rubrics, prompt sets, imports, Architext puzzles
    characters/  character sheets, glTF figures, promotion to a character
    records/     groups, completions and judgments, recorded whoever writes; queue state
    runs/        starting, resuming and cancelling runs
    review/      the review queue, claims, submissions, undo, rewrites, agreement stats
    datasets/    freezing dataset versions: filters, rewards, trainer formats, files
    api/         the JSON API, a router per resource
    access/      roles, page decorators, API tokens
    live/        websocket broadcasts and consumers

`errors` (refusals as field messages) is shared by all of them; the weighted reward, rule
criteria, think tags and the evaluation arithmetic are `shaping_core`'s, free of Django. Data
flows one way: prompt -> generation -> judgment -> review -> dataset version. `labelling` never imports `inference`: the model side calls in.
"""

"""The human side of Shaping: the domain and every page, API route and export of it, one
sub-package per domain:

    models.py    every table of the app
    admin.py     the admin: every model, file import, rubric versions, dataset freezing, tokens
    catalogue/   characters, rubrics, prompt sets, imports, Architext puzzles
    characters/  character sheets, glTF figures, promotion to a character
    records/     groups, completions and judgments, recorded whoever writes; queue state
    runs/        starting, resuming and cancelling runs; the seam to the model side
    review/      the review queue, claims, submissions, undo, rewrites, agreement stats
    datasets/    freezing dataset versions: filters, rewards, trainer formats, files
    explorer/    a run's or a dataset version's rows with their scores, filtered, sorted, paged
    versions/    a generator version's lifecycle: its versions and lineage (generators/), train
                 runs (training/), whether it got better (evaluation/), the /models/ page
    campaigns/   continuous shaping: rounds that run themselves, routing to reviewers,
                 the judge calibrated against them, the campaign pages
    api/         the JSON API, a router per resource
    access/      roles, page decorators, API tokens
    live/        websocket broadcasts and consumers
    management/  commands: import, build_dataset, create_user, create_token, seed_demo, ...
    views.py, urls.py, errors.py  the dashboard and health; every page's URL; refusals as field messages
    health.py        heartbeats: what /readyz writes and reads, what the queues' consumers write
    clock.py         the one clock every host compares times by: the database's

The weighted reward, rule criteria, think tags and the evaluation arithmetic are
`shaping_core`'s, free of Django. Data flows one way: prompt -> generation -> judgment ->
review -> dataset version. `labelling` never imports `inference`: the model side calls in.
docs/architecture.md draws the same map with where each kind of change goes.
"""

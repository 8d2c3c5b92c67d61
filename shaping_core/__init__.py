"""What both apps, Triton's Python-backend models and the TRL child share, free of Django:

    rules.py      rule criteria, scored from a completion's text (regex, length, think tags,
                  JSON schema, keywords, repetition)
    scoring.py    the weighted reward: one rule for the judge, review, exports and training
    thinktags.py  think tags: validate, strip, extract the thinking
    stats.py      the paired comparison of two generator versions (bootstrap, sign test,
                  length control)
    calibration.py  a judge's scores mapped onto the reviewers' scale (an isotonic fit)
    weights.py    version 1 (the shipped weights) and how a version's weights are fingerprinted
    strict.py     strict readers of untrusted text: finite, shallow JSON; ids in ASCII digits

It imports neither Django nor `labelling` nor `inference` (`tests/test_layout.py` checks), so
anything can import it without settings.
"""

"""Generator versions: the numbered, served versions of the generator model (their lineage,
which one is current, which one a run generates with), their page, and the shipped version 1.

Training and serving a new version are the model side's (`inference`); this package keeps the
rows and the choices made on them."""

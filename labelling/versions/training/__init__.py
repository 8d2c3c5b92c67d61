"""Training a new generator version from a dataset version: the train run's request (checked
and recorded before anything is queued), the version it will make, its logged steps, and the
version's lifecycle (training -> converting -> ready, or failed with the reason). Executing a
train run (the TRL child process, the conversion, Triton) is `inference.versions.train_runs`' job."""

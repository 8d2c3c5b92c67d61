"""`python -m inference.versions.training CONFIG.json`: the training child (inference/versions/training/child.py)."""

import sys

from inference.versions.training.child import main

sys.exit(main())

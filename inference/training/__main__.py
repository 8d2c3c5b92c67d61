"""`python -m inference.training CONFIG.json`: the training child (inference/training/child.py)."""

import sys

from inference.training.child import main

sys.exit(main())

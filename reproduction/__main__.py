"""``python -m reproduction diff|plot|summary|filters``: the analysis that sets our results beside the
paper's. Its code lives above the training programs, in ``results/`` (``results/commands.py``)."""
import sys

from results.commands import main

if __name__ == "__main__":
    sys.exit(main())

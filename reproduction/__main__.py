"""``python -m reproduction diff|plot|summary|filters``: the analysis that sets our results beside the
paper's. Its code lives above the training programs, in ``results/`` (``results/commands.py``)."""
import sys

from reproduction import look_past_the_current_folder

if __name__ == "__main__":
    look_past_the_current_folder()
    from results.commands import main

    sys.exit(main())

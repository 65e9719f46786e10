"""``python -m reproduction diff|plot|summary|filters``: the analysis that sets our results beside the
paper's. Its code lives above the training programs, in ``results/`` (``results/commands.py``)."""
import os
import sys
from pathlib import Path


def _look_past_the_current_folder() -> None:
    """``python -m`` puts the current folder first on ``sys.path``. Where that folder holds a
    ``results/`` that is not the package (what the programs write: ``results/runs``), Python would
    import it as an empty namespace package ahead of an editable install's ``results``; so the
    current folder leaves the path, unless it is a checkout (its ``results/`` is the package)."""
    here = Path.cwd()
    if (here / "results").is_dir() and not (here / "results" / "__init__.py").exists():
        sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != str(here)]


if __name__ == "__main__":
    _look_past_the_current_folder()
    from results.commands import main

    sys.exit(main())

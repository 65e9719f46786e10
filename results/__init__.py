"""The paper's numbers, ours, and the code that sets one beside the other.

``results/paper/*.json`` holds the paper's tables as data; ``results/runs/`` and ``results/bench/``
hold the records of our runs and benchmarks; the modules here read both: the diff, the plots, the
model summaries and filter counts, and the benchmarks of training steps. This package sits above the
training programs: it reads their recipes (the values at the top of ``mnist/__main__.py`` and the
others) and never the other way round.
"""

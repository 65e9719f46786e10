"""The table of runs: the cells of Table 1 (datasets x recipes) times seeds, each cell and seed one
run of its training program, all in one table folder (``python -m reproduction table``, issue 13).

Nothing about training happens here: a run is the program's own command, run in the table folder,

    python -m <dataset> [program options] [--recipe torch7] --seed S --out <run>    (a new run)
    python -m <dataset> --resume <run> [--data-dir D] [--no-download] [--progress P]  (one holding a run)

so the program's checks, checkpoints, resume and records are the ones a user gets by hand. The table
folder:

    table.json                        the plan: datasets, recipes, seeds, the program options
    <dataset>-<recipe>-seed<S>/       a run folder, written by its program alone
    logs/<run>.log                    the output of every attempt at the run, appended
    logs/<run>.events.jsonl           each attempt's start and end, each Slurm submission (attempts.py)
    slurm/                            submitit's job scripts and logs (executor_slurm.py)

Commands run in the table folder with paths relative to it, so a table folder can be moved or
copied whole. The plan's program options are validated up front by each program's own parser (all
of them, for every dataset, recipe and seed), so a bad one fails the plan in one line.

Re-planning a folder that holds a table: a dimension given (``--datasets``, ``--recipes``,
``--seeds``) replaces the table's, one not given keeps it; program options must be the table's
(a table is one experiment's settings) and are the table's when none are given. The options that
say where the data is and how to show progress (``PLACEMENT``: ``--data-dir``, ``--no-download``,
``--progress``) are no settings: each one given replaces the table's, and a resumed run gets them too
(the programs apply them on ``--resume``), so a table can go on where its data is elsewhere.
"""
import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from reproduction.files import FolderBusy, folder_lock, write_json

TABLE_FILE = "table.json"
DEFAULT_FOLDER = Path("results") / "tables" / "table1"
DATASETS = ("mnist", "cifar10", "svhn")
#: Program options the table sets itself, and why a user cannot pass them through.
OWNED = {"--out": "the table makes each run's folder inside its own --out",
         "--resume": "the table resumes interrupted runs itself",
         "--seed": "the table's --seeds sets each run's seed",
         "--recipe": "the table's --recipes sets each run's recipe"}
#: Program options that change where a run reads its data or how it shows progress, not what it
#: computes (reproduction/options.py APPLY_ON_RESUME): {option: takes a value}.
PLACEMENT = {"--data-dir": True, "--no-download": False, "--progress": True}
#: Environment variables naming a program's data folder (relative ones are made absolute, as the
#: programs run in the table folder).
DATA_DIR_VARIABLES = tuple(f"{d.upper()}_DATA_DIR" for d in DATASETS)


class TableError(ValueError):
    """A plan or table folder that cannot be used; ``str(e)`` is one line naming the option or file."""

    exit_code = 2


@dataclass(frozen=True)
class Planned:
    """One run of the table: a cell of Table 1 (dataset, recipe) and a seed."""

    dataset: str
    recipe: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.recipe}-seed{self.seed}"


@dataclass
class Table:
    """A table folder and its plan. ``seeds``: a count (each recipe's own seed and the next ones)
    or a list of seeds; ``recipes`` None: every recipe each program has."""

    folder: Path
    datasets: list
    recipes: list | None
    seeds: int | list
    options: list = field(default_factory=list)   # the settings every run is started with
    placement: list = field(default_factory=list)  # PLACEMENT options, also given on a resume
    runs: list = field(default_factory=list)      # [Planned], from the plan

    def run_dir(self, run: Planned) -> Path:
        return self.folder / run.name

    def log_path(self, run: Planned) -> Path:
        return self.folder / "logs" / f"{run.name}.log"

    def events_path(self, run: Planned) -> Path:
        return self.folder / "logs" / f"{run.name}.events.jsonl"

    def command(self, run: Planned, resume: bool) -> list[str]:
        """The program's arguments after ``python``, to run in the table folder."""
        if resume:
            return ["-m", run.dataset, "--resume", run.name, *self.placement]
        recipe = ["--recipe", run.recipe] if run.recipe != "theano" else []
        return ["-m", run.dataset, *self.options, *self.placement, *recipe, "--seed", str(run.seed), "--out", run.name]

    def environment(self) -> dict:
        """What the programs' environment needs beyond the table command's: this code first on
        the path (a checkout's), and data folders named relative to the table command's folder
        made absolute."""
        env = {}
        root = Path(__file__).resolve().parents[1]
        if (root / "reproduction" / "__init__.py").exists():
            env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
        for name in DATA_DIR_VARIABLES:
            if os.environ.get(name) and not Path(os.environ[name]).is_absolute():
                env[name] = str(Path(os.environ[name]).expanduser().resolve())
        return env

    def spec(self) -> dict:
        return {"format": 1, "datasets": self.datasets, "recipes": self.recipes, "seeds": self.seeds,
                "options": self.options, "placement": self.placement}


def parse_seeds(text: str):
    """``--seeds``: ``N`` (a count) or a comma-separated list of seeds (``1234,1300``; one seed: ``7,``)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) == 1:
            n = int(parts[0])
            if n < 1:
                raise ValueError
            return n
        seeds = [int(p) for p in parts if p]
    except ValueError:
        raise TableError(f"--seeds {text}: expected a count N >= 1 or a list of seeds (1234,1300; one seed: 7,)") \
            from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise TableError(f"--seeds {text}: {'no seed' if not seeds else 'a seed twice'}")
    return seeds


def parse_list(option: str, text: str, allowed) -> list:
    items = [p.strip() for p in text.split(",") if p.strip()]
    bad = [i for i in items if i not in allowed]
    if bad or not items:
        raise TableError(f"{option} {text}: expected a comma-separated list of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def read_spec(folder: Path) -> dict | None:
    """The plan stored in ``folder``'s table.json, or None where there is none."""
    import json

    path = Path(folder) / TABLE_FILE
    if not path.exists():
        if Path(folder).exists() and not Path(folder).is_dir():
            raise TableError(f"--out {folder}: a file, not a folder")
        return None
    try:
        spec = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TableError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(spec, dict) or spec.get("format") != 1 or not isinstance(spec.get("options"), list):
        raise TableError(f"{path}: not a table plan of format 1")
    return spec


def no_table(folder: Path) -> TableError:
    """The error of ``--status`` on a folder without a table."""
    return TableError(f"--out {folder}: no table there (no {TABLE_FILE}); plan one with python -m reproduction "
                      f"table --out {folder} ...")


def plan(folder: Path, datasets: list | None, recipe_names: list | None, seeds, options: list[str]) -> Table:
    """The table to run in ``folder``: the dimensions and program options given, the stored table's
    where not given (module docstring), validated by each program's parser. Writes nothing."""
    from . import recipes

    folder = Path(folder)
    spec = read_spec(folder) or {}
    datasets = datasets or spec.get("datasets") or list(DATASETS)
    recipe_names = recipe_names or spec.get("recipes")
    seeds = seeds if seeds is not None else spec.get("seeds", 1)
    options, placement = _checked_options(list(options), datasets)
    stored, stored_placement = _checked_options(list(spec.get("options", [])), datasets)
    if spec and options and options != stored:
        raise TableError(f"{folder} is a table with the program options {' '.join(stored) or '(none)'}; "
                         "a table is one set of options: give none, the same, or another --out")
    options = options or stored
    placement = _merged(stored_placement + list(spec.get("placement", [])), placement)

    runs = []
    for ds in datasets:
        have = recipes.available(ds)
        for r in recipe_names or have:
            if r not in have:
                raise TableError(f"--recipes {r}: python -m {ds} has no {r} recipe yet "
                                 f"(it has {', '.join(have)})")
            base = recipes.recipe(ds, r)["seed"]
            for seed in (range(base, base + seeds) if isinstance(seeds, int) else seeds):
                runs.append(Planned(ds, r, int(seed)))
    for run in runs:
        args = [*options, *placement, *(["--recipe", run.recipe] if run.recipe != "theano" else []),
                "--seed", str(run.seed)]
        try:
            parsed = recipes.parse_options(run.dataset, args)
        except recipes.RecipeError as e:
            raise TableError(f"{e} (run {run.name})") from None
        for name in ("out", "resume"):
            if getattr(parsed, name, None):
                raise TableError(f"--{name} (as {getattr(parsed, name)}): {OWNED['--' + name]}")
    return Table(folder, list(datasets), recipe_names, seeds, options, placement, runs)


def _checked_options(options: list[str], datasets: list) -> tuple[list[str], list[str]]:
    """(settings, placement): the program options split (``PLACEMENT``), refusing those the table
    sets; a relative --data-dir made absolute (the programs run in the table folder), and refused
    for a table of several datasets."""
    settings, placement, i = [], [], 0
    while i < len(options):
        token = options[i]
        name, eq, value = token.partition("=")
        if name in OWNED:
            raise TableError(f"{name}: not a program option of a table: {OWNED[name]}")
        if name not in PLACEMENT:
            settings.append(token)
            i += 1
            continue
        if PLACEMENT[name] and not eq:
            if i + 1 >= len(options):
                raise TableError(f"{name}: expected a value")
            i += 1
            value = options[i]
        if name == "--data-dir":
            if len(datasets) > 1:
                raise TableError(f"--data-dir names one dataset's files, and this table has {', '.join(datasets)}: "
                                 f"set {', '.join(v for v in DATA_DIR_VARIABLES)} instead")
            value = str(Path(value).expanduser().resolve())
        placement += [name, value] if PLACEMENT[name] else [name]
        i += 1
    return settings, placement


def _merged(old: list[str], new: list[str]) -> list[str]:
    """PLACEMENT options: ``old`` with each option ``new`` gives replaced by its new value."""
    def pairs(tokens):
        out, i = {}, 0
        while i < len(tokens):
            takes = PLACEMENT.get(tokens[i], False)
            out[tokens[i]] = tokens[i + 1:i + 2] if takes else []
            i += 2 if takes else 1
        return out

    return [t for name, value in {**pairs(old), **pairs(new)}.items() for t in (name, *value)]


def save(table: Table) -> None:
    """Create the table folder and write its plan (atomically), unless it holds that plan already."""
    try:
        (table.folder / "logs").mkdir(parents=True, exist_ok=True)
        if read_spec(table.folder) != table.spec():
            write_json(table.folder / TABLE_FILE, table.spec())
    except OSError as e:
        raise TableError(f"--out {table.folder}: cannot write the table there ({e.strerror or e})") from None


@contextlib.contextmanager
def command_lock(table: Table):
    """Held by the table command while it decides what to run and runs or submits it, so that two
    table commands never start the same run twice (the kernel releases it when the command dies)."""
    try:
        table.folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TableError(f"--out {table.folder}: cannot create the table folder ({e.strerror or e})") from None
    try:
        with folder_lock(table.folder):
            yield
    except FolderBusy:
        raise TableError(f"{table.folder}: another table command is running this table; wait for it to end, or "
                         "stop it (its runs stop at their next checkpoint)") from None


def python() -> str:
    """The Python that runs the programs: this one."""
    return sys.executable

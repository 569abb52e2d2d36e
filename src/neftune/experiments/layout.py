"""An experiment's folder (``DIR``) and which of its files are the experiment's.

::

    experiment.json        what every arm shares (model, data, training and eval options)
    arms/<arm id>/         a `neftune train` run folder, its eval/ folder, and arm.json
    results.json           every arm's metrics and curves (schema neftune.results/1)
    report/                report.html, summary.md, PNGs (built by neftune.experiments.report)

An arm is finished exactly when its ``arm.json`` exists: it is written atomically, last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..finetune.configfile import CONFIG_NAME
from ..finetune.training import RUN_FILE

RESULTS_FILE = "results.json"
EXPERIMENT_FILE = "experiment.json"
#: The files an experiment writes at the top of its folder.
EXPERIMENT_FILES = (EXPERIMENT_FILE, RESULTS_FILE, CONFIG_NAME, "neftune.log")
#: Its top-level entries: those files, the arm folders and the report.
EXPERIMENT_ENTRIES = (*EXPERIMENT_FILES, "arms", "report")
ARM_FILE = "arm.json"


def experiment_files(folder: Path) -> set[str]:
    """The files (relative paths, any depth) that the experiment in ``folder`` wrote.

    Its top-level files, each arm folder's run files (:func:`~neftune.finetune.training.run_files`: the
    run, its evaluation) and ``arm.json``, and the report's files. Anything else, at any depth,
    is the user's.
    """
    from ..finetune.outdirs import entries
    from ..finetune.training import run_files
    from .report import REPORT_DIR, REPORT_FILES

    owned = {n for n in EXPERIMENT_FILES if (folder / n).is_file()}
    arms = folder / "arms"
    for name in sorted(entries(arms)) if arms.is_dir() and not arms.is_symlink() else []:
        arm = arms / name
        if (
            arm.is_dir()
            and not arm.is_symlink()
            and ((arm / ARM_FILE).is_file() or (arm / RUN_FILE).is_file())
        ):
            owned |= {f"arms/{name}/{p}" for p in run_files(arm)}
            owned |= {f"arms/{name}/{ARM_FILE}"} if (arm / ARM_FILE).is_file() else set()
    report = folder / REPORT_DIR
    if report.is_dir() and not report.is_symlink():
        owned |= {f"{REPORT_DIR}/{n}" for n in REPORT_FILES if (report / n).is_file()}
    return owned


def clear_experiment(folder: Path, protect: Sequence[Path] = ()) -> list[str]:
    """Remove what a previous experiment wrote in ``folder``; returns the files kept (relative paths).

    Kept: everything the experiment did not write, at any depth, and paths in ``protect`` (the
    data being trained on).
    """
    from ..finetune.outdirs import entries, remaining, remove_files

    touched = set(EXPERIMENT_ENTRIES) & entries(folder)
    remove_files(folder, experiment_files(folder), protect)
    return remaining(folder, touched)

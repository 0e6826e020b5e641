"""Runs a grid of experiments from a `configs/*.py` file, then reports.

A config file exposes `get_config(quick=False)` returning a dict with
`experiment` (the kind of experiment, a key of `EXPERIMENTS`, e.g.
"cross_lipschitz"), `experiment_name` (the folder below `exp_dir`), `runs`
(a list of keyword dicts of that experiment's run config) and `evaluation`
(keyword arguments of that experiment's report). `run_sweep` dispatches on
`experiment`. Finished runs are skipped and interrupted ones resume from
their checkpoints, so a killed sweep is simply started again.
"""

import importlib.util
import os
from typing import Callable
from typing import NamedTuple

from tfrobust import _validate

__all__ = ["EXPERIMENTS", "Experiment", "load_config_file", "run_sweep"]


class Experiment(NamedTuple):
    """How a sweep trains one run and reports on a folder of runs.

    Attributes:
        train_run: `(kwargs, *, experiment_name, exp_dir, data_dir, strategy,
            verbose, index, total) -> None`; skips a finished run, resumes
            an interrupted one.
        report: `(root, out_dir, *, data_dir, **evaluation) -> rows`.
        check_run: `(kwargs, *, experiment_name, exp_dir) -> None`, raises
            ValueError on a bad run config before anything is trained.
    """

    train_run: Callable
    report: Callable
    check_run: Callable


def _cl_config(kwargs, **common):
    from tfrobust.experiments import cross_lipschitz as cl

    run = cl.WorkerConfig(**common, **kwargs)
    run.validate()
    return run


def _cl_check(kwargs, *, experiment_name, exp_dir):
    _cl_config(kwargs, experiment_name=experiment_name, exp_dir=exp_dir)


def _cl_train(kwargs, *, experiment_name, exp_dir, data_dir, strategy, verbose, index, total):
    from tfrobust.experiments import cross_lipschitz as cl

    run = _cl_config(kwargs, experiment_name=experiment_name, exp_dir=exp_dir, data_dir=data_dir,
                     strategy=strategy, verbose=verbose)
    if os.path.exists(os.path.join(run.run_dir(), "metrics.json")):
        print(f"[{index}/{total}] done already: {run.run_dir()}")
        return
    print(f"[{index}/{total}] training {run.run_dir()}")
    run.continue_train = True  # resume an interrupted run, if any
    cl.run(run)


def _cl_report(root, out_dir, *, data_dir, **evaluation):
    from tfrobust.experiments import cl_report

    return cl_report.report(root, out_dir, data_dir=data_dir, **evaluation)


#: Experiment kinds a config can name in its `experiment` entry.
EXPERIMENTS = {"cross_lipschitz": Experiment(_cl_train, _cl_report, _cl_check)}


def load_config_file(path, quick=False):
    """Imports `path` and returns its `get_config(quick)`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected a config file. Received: config={path!r}")
    spec = importlib.util.spec_from_file_location("_tfrobust_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"Expected {path!r} to define get_config(quick=False).")
    return module.get_config(quick=quick)


def run_sweep(config, *, exp_dir="exps", data_dir=None, strategy="default", out_dir=None, verbose=2, only=None,
              report=True):
    """Trains every run of `config` not yet finished, then writes the report.

    Args:
        config: a config dict (see the module docstring).
        exp_dir: root folder of experiments.
        data_dir: local dataset files.
        strategy: `tf.distribute` strategy name.
        out_dir: where the report goes (default `<exp_dir>/<name>/report`).
        verbose: verbosity of training.
        only: optional dict of settings (e.g. `{"nn_type": "resnet"}`); only
            runs matching all of them are trained, so several processes or
            machines can share one grid. The report covers every finished
            run below the experiment folder.
        report: False trains only (the report is made by a later call or
            by `apps/eval_robustness.py`).

    Returns:
        The experiment's report rows (None when `report` is False).

    Raises:
        ValueError: on a config without a known `experiment`, without
            `experiment_name` or `runs`, with a bad run, or when no run
            matches `only`.
    """
    if not isinstance(config, dict):
        raise _validate.error("config", "a dict from get_config()", config)
    kind = config.get("experiment")
    if kind not in EXPERIMENTS:
        raise ValueError(
            f"Expected the config to name its experiment: `experiment` one of {sorted(EXPERIMENTS)}. "
            f"Received: experiment={kind!r}"
        )
    experiment = EXPERIMENTS[kind]
    name = config.get("experiment_name")
    if not isinstance(name, str) or not name or not isinstance(config.get("runs"), list):
        raise ValueError(
            "Expected the config to hold `experiment_name` (a folder name) and `runs` (a list). "
            f"Received: experiment_name={name!r}, runs of type {type(config.get('runs')).__name__}"
        )
    runs = [
        kwargs for kwargs in config["runs"]
        if all(str(kwargs.get(k)) == str(v) for k, v in (only or {}).items())
    ]
    if not runs:
        raise ValueError(f"Expected some runs to match only={only!r}; none do.")
    for kwargs in runs:  # a typo in the last run must not surface after hours of training
        experiment.check_run(kwargs, experiment_name=name, exp_dir=exp_dir)
    for i, kwargs in enumerate(runs):
        experiment.train_run(kwargs, experiment_name=name, exp_dir=exp_dir, data_dir=data_dir,
                             strategy=strategy, verbose=verbose, index=i + 1, total=len(runs))
    if not report:
        return None
    root = os.path.join(exp_dir, name)
    return experiment.report(root, out_dir or os.path.join(root, "report"), data_dir=data_dir,
                             **config.get("evaluation", {}))

"""Runs a grid of experiments from a `configs/*.py` file, then reports.

A config file exposes `get_config(quick=False)` returning a dict with
`experiment_name`, `runs` (a list of `WorkerConfig` keyword dicts) and
`evaluation` (keyword arguments of `cl_report.report`). Finished runs are
skipped and interrupted ones resume from their checkpoints, so a killed sweep
is simply started again.
"""

import importlib.util
import os

from tfrobust.experiments import cl_report
from tfrobust.experiments import cross_lipschitz as cl


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


def run_sweep(config, *, exp_dir="exps", data_dir=None, strategy="default", out_dir=None, verbose=2, only=None):
    """Trains every run of `config` not yet finished, then writes the report.

    Args:
        only: optional dict of settings (e.g. `{"nn_type": "resnet"}`); only
            runs matching all of them are trained, so several processes or
            machines can share one grid. The report covers every finished
            run below the experiment folder.
    """
    name = config["experiment_name"]
    runs = [
        kwargs for kwargs in config["runs"]
        if all(str(kwargs.get(k)) == str(v) for k, v in (only or {}).items())
    ]
    if not runs:
        raise ValueError(f"Expected some runs to match only={only!r}; none do.")
    for i, kwargs in enumerate(runs):
        run = cl.WorkerConfig(
            experiment_name=name, exp_dir=exp_dir, data_dir=data_dir,
            strategy=strategy, verbose=verbose, **kwargs,
        )
        run.validate()
        if os.path.exists(os.path.join(run.run_dir(), "metrics.json")):
            print(f"[{i + 1}/{len(runs)}] done already: {run.run_dir()}")
            continue
        print(f"[{i + 1}/{len(runs)}] training {run.run_dir()}")
        run.continue_train = True  # resume an interrupted run, if any
        cl.run(run)
    root = os.path.join(exp_dir, name)
    return cl_report.report(
        root, out_dir or os.path.join(root, "report"), data_dir=data_dir,
        **config.get("evaluation", {}),
    )

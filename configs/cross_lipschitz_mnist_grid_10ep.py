"""The λ grid of `cross_lipschitz_mnist_grid.py` at 10 epochs, one seed (issue 15).

A cross-check of the 3-epoch, 3-seed grid at a lower test error: the same
ten regularizer settings, seed 5 only (a 10-epoch Cross-Lipschitz run costs
~4 minutes on the shared 2-core CPU, three seeds did not fit the session).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_cl_grid", os.path.join(os.path.dirname(os.path.abspath(__file__)), "cross_lipschitz_mnist_grid.py"))
_grid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_grid)


def get_config(quick=False):
    return _grid.get_config(quick, n_epochs=10, seeds=(5,), experiment_name="cl_mnist_grid_10ep")

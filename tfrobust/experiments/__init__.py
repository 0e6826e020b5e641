"""Experiments of the papers, each one library function behind a thin app.

`sweep` runs a grid from a `configs/*.py` file and dispatches on the
experiment the config names (`EXPERIMENTS`); `cl_report` compares the
Cross-Lipschitz certified bounds with attacks through
`tfrobust.evaluation.certificates`; `_cli.run_main` is how every app ends
on an anticipated error (message on stderr, exit status 1).
"""

from tfrobust.experiments import cross_lipschitz

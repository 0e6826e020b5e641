"""Experiments of the papers, each one library function behind a thin app."""

from tfrobust.experiments import cross_lipschitz

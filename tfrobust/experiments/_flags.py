"""Flags shared by the apps, defined once so that every app spells and documents them alike.

    from tfrobust.experiments._flags import define_strategy_flag
    define_strategy_flag()                 # --strategy, default "default"
    ...
    strategy = tfrobust.training.make_strategy(FLAGS.strategy)

An unknown name is refused when the flags are parsed (absl prints the
flag's message and the app exits with status 1 before any work); a bad
device or `TF_CONFIG` is refused by `make_strategy` with a `ValueError`,
which `run_main` prints as one `Error:` line.
"""

__all__ = ["STRATEGY_HELP", "define_strategy_flag"]

STRATEGY_HELP = (
    "tf.distribute strategy: default (this process's device), mirrored (all local GPUs; "
    "mirrored:/gpu:0,/gpu:1 names them), one_device (one_device:/gpu:1), multi_worker "
    "(MultiWorkerMirroredStrategy, cluster from the TF_CONFIG environment variable; only the "
    "chief writes outputs). See README, 'Scaling out (tf.distribute)'.")


def define_strategy_flag(default="default", flag_values=None):
    """Defines `--strategy` (a `tfrobust.training.make_strategy` name) on absl's flags.

    Args:
        default: the default name.
        flag_values: an `absl.flags.FlagValues` (default: the global `FLAGS`).

    Returns:
        The flag holder.
    """
    from absl import flags

    kwargs = {} if flag_values is None else {"flag_values": flag_values}
    holder = flags.DEFINE_string("strategy", default, STRATEGY_HELP, **kwargs)

    def known(value):
        # The name only: devices and TF_CONFIG are checked by make_strategy.
        from tfrobust.training.strategy import VALID_NAMES

        return isinstance(value, str) and value.strip().lower().split(":", 1)[0] in VALID_NAMES

    flags.register_validator(
        "strategy", known,
        message=("Expected --strategy to be one of default, mirrored (or mirrored:DEVICE,...), "
                 "one_device (or one_device:DEVICE), multi_worker"), **kwargs)
    return holder

"""The one way an app ends on an anticipated error: its message on stderr, exit status 1.

Every `apps/*.py` ends with `run_main(main)` instead of `app.run(main)`.
A `ValueError`, `FileNotFoundError` or other `OSError` raised by `main`
(bad flags, missing data, an output folder that is a file, tfrobust's
`CheckpointError`, which is a `ValueError`) is printed as one line
`Error: <message>` on stderr and the process exits with status 1, without
a traceback: the message names the flag or file, a traceback adds nothing
for a user. Anything else is a bug and keeps its traceback.
"""

import sys

__all__ = ["ANTICIPATED", "run_main"]

#: The exception types an app reports as a message.
ANTICIPATED = (ValueError, OSError)  # FileNotFoundError is an OSError


def run_main(main, argv=None):
    """`absl.app.run(main)`, with anticipated errors reported as a message and status 1.

    Args:
        main: the app's `main(argv)`.
        argv: command line (default `sys.argv`).
    """
    from absl import app

    def checked(args):
        try:
            return main(args)
        except ANTICIPATED as err:
            print(f"Error: {err}", file=sys.stderr)
            sys.exit(1)

    app.run(checked, argv=argv)

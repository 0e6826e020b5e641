"""The original command name for rCNN+: `apps/train_rCNN.py --plus`."""

import os
import runpy
import sys

if __name__ == "__main__":
    if "--plus" not in sys.argv and "--noplus" not in sys.argv:
        sys.argv.insert(1, "--plus")
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_rCNN.py"), run_name="__main__")

"""Per-epoch checkpoints that let `fit` resume exactly where it stopped.

A checkpoint holds the model, the optimizer (slots and iteration count, hence
the learning-rate schedule's position), the number of finished epochs and of
updates, and the experiment variables passed as `fit(state=...)`. The
per-epoch history is kept next to it in `history.json` so a resumed run
returns the whole history.

Damage is handled without deleting anything the user owns:

- If the latest checkpoint cannot be restored (truncated, corrupt, missing
  data file), `restore` falls back automatically to the newest earlier
  checkpoint that the `checkpoint` state file lists and that restores
  intact, with a warning naming the damaged one (which is overwritten when
  that epoch is trained again). When none is intact, `fit` stops with a
  `ValueError` and leaves every file as it was.
- A corrupt `history.json` gives a warning naming the file, and the history
  keeps every list that can still be read from it.
"""

import json
import os
import re
import shutil
import tempfile
import warnings

import tensorflow as tf

HISTORY_FILE = "history.json"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be restored."""


def _unreadable(directory, detail):
    return CheckpointError(
        f"Expected checkpoint_dir to hold a readable checkpoint of this "
        f"model, optimizer and state. Received: checkpoint_dir={directory!r}, "
        f"from which no checkpoint could be restored ({detail}). Its files "
        "were left untouched; pass another checkpoint_dir to start afresh, "
        "or the model, optimizer and state these checkpoints were written "
        "for.")


def _salvage_history(text):
    """The `epoch` list and every complete `history` list in `text`.

    `history.json` is written atomically, so damage comes from outside (a
    truncated copy, a disk error); every list that is still complete is
    kept.
    """
    lists = {}
    for match in re.finditer(r'"([^"\\]+)"\s*:\s*(\[[^\[\]]*\])', text):
        try:
            values = json.loads(match.group(2))
        except ValueError:
            continue
        lists.setdefault(match.group(1), values)
    epochs = lists.pop("epoch", None)
    if epochs is None:
        return None
    return {"epoch": epochs, "history": lists}


class TrainingCheckpoint:
    """Saves and restores the training state of `fit`.

    Args:
        directory: The checkpoint directory, or None for no checkpoints.
        model: The model being trained.
        optimizer: Its (built) Keras optimizer.
        strategy: The distribution strategy; only the chief writes into
            `directory` (other workers write to a private temporary folder
            that is removed afterwards, as multi-worker saving requires).
        chief: Whether this process is the chief.
        max_to_keep: How many checkpoints to keep.
        state: Optional dict of experiment variables (or nests of them),
            saved and restored with the rest.
    """

    def __init__(self, directory, model, optimizer, strategy, chief,
                 max_to_keep, state=None):
        self.directory = None if directory is None else os.fspath(directory)
        self.chief = chief
        with strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                    name="step")
        extra = {"state": dict(state)} if state else {}
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epoch=self.epoch,
            step=self.step, **extra)
        with strategy.scope():
            # Created lazily otherwise; now, so that a restore matches it.
            self.checkpoint.save_counter  # noqa: B018
        self.manager = None
        if self.directory is None:
            return
        if os.path.exists(self.directory) and not os.path.isdir(
                self.directory):
            raise ValueError(
                "Expected checkpoint_dir to be a directory. Received: "
                f"checkpoint_dir={self.directory!r}, which is a file")
        write_dir = self.directory
        if not chief:
            write_dir = tempfile.mkdtemp(prefix="tfrobust_worker_ckpt_")
        self._write_dir = write_dir
        try:
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, write_dir, max_to_keep=max_to_keep,
                checkpoint_name="ckpt")
            latest = tf.train.latest_checkpoint(self.directory)
        except Exception as e:  # A corrupt state file raises parse errors.
            raise _unreadable(self.directory,
                              f"{type(e).__name__}: {e}") from e
        self._latest = latest

    def restore(self):
        """Restores the latest checkpoint; returns the finished epoch count."""
        if self.manager is None:
            return 0
        if self._latest is None:
            names = (os.listdir(self.directory)
                     if os.path.isdir(self.directory) else [])
            stray = [f for f in names
                     if f.startswith("ckpt-") and f.endswith(".index")]
            if stray:
                raise _unreadable(
                    self.directory, f"checkpoint files {sorted(stray)} exist "
                    "but the 'checkpoint' state file does not name any")
            return 0
        candidates, names = [], set()
        for path in [self._latest, *reversed(self.manager.checkpoints)]:
            if os.path.basename(path) not in names:
                names.add(os.path.basename(path))
                candidates.append(path)
        failures = []
        for path in candidates:
            try:
                status = self.checkpoint.restore(path)
                # Every object of ours must be matched; values we do not
                # hold (e.g. a save counter created lazily) are expected
                # leftovers.
                status.expect_partial()
                status.assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001
                # Corrupt files fail in many ways (OpError, IndexError,
                # ValueError, AssertionError...): report them all alike.
                failures.append(
                    f"{os.path.basename(path)}: {type(e).__name__}: {e}")
                continue
            if failures:
                warnings.warn(
                    f"checkpoint_dir={self.directory!r}: could not restore "
                    f"{'; '.join(failures)}. Resuming from the newest intact "
                    f"checkpoint, {os.path.basename(path)}; the damaged "
                    "files are left as they are until training writes that "
                    "epoch's checkpoint again.", RuntimeWarning,
                    stacklevel=3)
            return int(self.epoch.numpy())
        raise _unreadable(self.directory, "; ".join(failures))

    def save(self, epoch, steps):
        """Records `epoch` finished epochs and `steps` updates, and saves."""
        self.epoch.assign(epoch)
        self.step.assign(steps)
        if self.manager is None:
            return None
        return self.manager.save(checkpoint_number=epoch)

    def close(self):
        """Removes a non-chief worker's private temporary folder."""
        if self.manager is not None and not self.chief:
            shutil.rmtree(self._write_dir, ignore_errors=True)

    def load_history(self, finished_epochs):
        """The history of the first `finished_epochs` epochs, if recorded."""
        if self.directory is None or finished_epochs == 0:
            return None
        path = os.path.join(self.directory, HISTORY_FILE)
        if not os.path.exists(path):
            return None
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError as e:
            warnings.warn(f"Could not read the training history {path!r} "
                          f"({e}); the returned history starts at epoch "
                          f"{finished_epochs + 1}.", RuntimeWarning,
                          stacklevel=3)
            return None
        try:
            record = json.loads(text)
            epochs = [int(e) for e in record["epoch"]]
            values = {k: list(v) for k, v in record["history"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            record = _salvage_history(text)
            try:
                epochs = [int(e) for e in record["epoch"]]
                values = {k: list(v) for k, v in record["history"].items()
                          if len(v) == len(epochs)}
            except (ValueError, KeyError, TypeError):
                epochs, values = None, {}
            kept = ("nothing could be read from it" if not epochs else
                    f"kept {len(epochs)} epochs of {sorted(values)}")
            warnings.warn(f"The training history {path!r} is damaged "
                          f"({type(e).__name__}: {e}); {kept}.",
                          RuntimeWarning, stacklevel=3)
            if not epochs:
                return None
        keep = [i for i, e in enumerate(epochs) if e < finished_epochs]
        return ([epochs[i] for i in keep],
                {k: [v[i] for i in keep if i < len(v)]
                 for k, v in values.items()})

    def save_history(self, epochs, history):
        if self.directory is None or not self.chief:
            return
        path = os.path.join(self.directory, HISTORY_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": list(epochs), "history": history}, f)
        os.replace(tmp, path)

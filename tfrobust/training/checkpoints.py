"""Per-epoch checkpoints that let `fit` resume exactly where it stopped.

A checkpoint holds the model, the optimizer (slots and iteration count, hence
the learning-rate schedule's position), the number of finished epochs and of
updates. The per-epoch history is kept next to it in `history.json` so a
resumed run returns the whole history. Nothing here ever deletes files the
user owns: an unreadable checkpoint stops `fit` with a `ValueError`.
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

HISTORY_FILE = "history.json"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be restored."""


def _unreadable(directory, detail):
    return CheckpointError(
        f"Expected checkpoint_dir to hold a readable checkpoint of this "
        f"model and optimizer. Received: checkpoint_dir={directory!r}, whose "
        f"latest checkpoint could not be restored ({detail}). Its files were "
        "left untouched: move them away or pass another checkpoint_dir to "
        "start afresh.")


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
    """

    def __init__(self, directory, model, optimizer, strategy, chief,
                 max_to_keep):
        self.directory = None if directory is None else os.fspath(directory)
        self.chief = chief
        with strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                    name="step")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epoch=self.epoch,
            step=self.step)
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
        try:
            status = self.checkpoint.restore(self._latest)
            # Every object of ours must be matched; values we do not hold
            # (e.g. a save counter created lazily) are expected leftovers.
            status.expect_partial()
            status.assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001
            # Corrupt files fail in many ways (OpError, IndexError,
            # ValueError, AssertionError...): report them all alike.
            raise _unreadable(self.directory,
                              f"{type(e).__name__}: {e}") from e
        return int(self.epoch.numpy())

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
        try:
            with open(path) as f:
                record = json.load(f)
            epochs = [int(e) for e in record["epoch"]]
            values = {k: list(v) for k, v in record["history"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return None  # The history is a convenience; weights matter.
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

"""Damaged checkpoint directories: automatic fall-back to the newest intact
checkpoint, a salvaged history.json, and errors that advise no file moves."""

import json
import os
import sys
import warnings

import numpy as np
import pytest

from tfrobust import training

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _train_script  # noqa: E402


def _fit(model, epochs, ckpt):
    x, y = _train_script.make_data()
    return training.fit(model, (x[:64], y[:64]), batch_size=32, epochs=epochs,
                        optimizer="momentum", learning_rate=0.1, checkpoint_dir=ckpt,
                        seed=4, verbose=0)


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


@pytest.fixture(scope="module")
def reference():
    model = _train_script.make_model(1)
    _fit(model, 4, None)
    return model.get_weights()


def test_truncated_latest_checkpoint_falls_back_to_the_newest_intact(tmp_path, reference):
    ckpt = str(tmp_path / "ckpt")
    _fit(_train_script.make_model(1), 3, ckpt)
    _truncate(os.path.join(ckpt, "ckpt-3.data-00000-of-00001"))
    model = _train_script.make_model(7)
    with pytest.warns(RuntimeWarning, match=r"ckpt-3.*newest intact checkpoint, ckpt-2"):
        history = _fit(model, 4, ckpt)
    assert history.initial_epoch == 2 and history.epoch == [0, 1, 2, 3]
    for a, b in zip(reference, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # Epoch 3 was trained again and its checkpoint rewritten: no warning now.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _fit(_train_script.make_model(7), 4, ckpt).initial_epoch == 4


def test_no_intact_checkpoint_raises_without_advising_to_move_files(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    _fit(_train_script.make_model(1), 2, ckpt)
    for name in ("ckpt-1.index", "ckpt-2.index"):
        with open(os.path.join(ckpt, name), "wb") as f:
            f.write(b"\x00garbage\x01")
    before = sorted(os.listdir(ckpt))
    with pytest.raises(ValueError, match="ckpt-2.*ckpt-1") as info:
        _fit(_train_script.make_model(1), 3, ckpt)
    assert "move" not in str(info.value)
    assert sorted(os.listdir(ckpt)) == before


def test_corrupt_history_warns_and_keeps_what_can_be_read(tmp_path):
    # Issue 9 item 7: a damaged history.json was dropped silently, so the
    # resumed run's history held only the epochs after the resume.
    ckpt = str(tmp_path / "ckpt")
    _fit(_train_script.make_model(1), 3, ckpt)
    path = os.path.join(ckpt, "history.json")
    with open(path) as f:
        record = json.load(f)
    text = json.dumps(record)
    cut = text.index('"lr"') + 8  # inside the "lr" list (after loss, ce...)
    with open(path, "w") as f:
        f.write(text[:cut])
    with pytest.warns(RuntimeWarning, match="history.json.*kept 3 epochs"):
        history = _fit(_train_script.make_model(1), 4, ckpt)
    assert history.epoch == [0, 1, 2, 3]
    assert history["loss"][:3] == record["history"]["loss"]
    assert history["lr"][:3] == [None] * 3 and history["lr"][3] is not None

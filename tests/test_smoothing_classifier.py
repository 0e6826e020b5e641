"""Tests of SmoothedClassifier: vote rules against NumPy, chunking, knobs, save/export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrobust
from tfrobust.models.wrappers import declared_flag
from tfrobust.smoothing import SmoothedClassifier
from tfrobust.testing import run_layer_test

K = 4


def _base(seed=0, shape=(4, 4, 1)):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(K)])


@pytest.fixture
def x():
    return np.random.default_rng(1).uniform(size=(5, 4, 4, 1)).astype("float32")


def _noisy_logits(base, x, sigma, n, chunk, seed):
    """The noisy logits `[n, B, K]` the model draws: one seed per call from a
    fresh SeedGenerator(seed), chunk i folded in (see `_call_seed`)."""
    call_seed = tf.cast(keras.random.SeedGenerator(seed).next() % (2**31 - 1), tf.int32)
    parts, done, i = [], 0, 0
    while done < n:
        d = min(chunk, n - done)
        tiled = np.tile(x, (d, 1, 1, 1))
        noise = tf.random.stateless_normal(tiled.shape, seed=tf.random.experimental.stateless_fold_in(call_seed, i))
        parts.append(base(tiled + sigma * noise.numpy()).numpy().reshape(d, x.shape[0], K))
        done, i = done + d, i + 1
    return np.concatenate(parts)


def _reference(logits, vote):
    n = logits.shape[0]
    if vote == "soft":
        return logits.mean(0)
    if vote == "prediction":
        votes = np.eye(K)[logits.argmax(-1)].sum(0) / n
    else:
        ranks = np.argsort(np.argsort(-logits, axis=-1), axis=-1)
        votes = (2.0 ** -ranks).sum(0) / (n * (2.0 - 2.0 ** (1 - K)))
    return np.log(np.maximum(votes, 1e-12))


@pytest.mark.parametrize("vote", ["soft", "prediction", "weighted"])
def test_vote_rules_match_numpy_over_chunks(vote, x):
    base = _base()
    model = SmoothedClassifier(base, sigma=0.4, n=7, vote=vote, chunk_size=3, seed=5)
    logits = _noisy_logits(base, x, 0.4, 7, 3, 5)
    np.testing.assert_allclose(model(x).numpy(), _reference(logits, vote), rtol=1e-5, atol=1e-5)
    if vote != "soft":  # the vote distribution sums to one
        np.testing.assert_allclose(np.exp(model(x).numpy()).sum(-1), 1.0, atol=1e-5)


def test_top_k_follows_the_original_rules(x):
    base = _base()
    logits = _noisy_logits(base, x, 0.5, 9, 4, 2)
    hard = SmoothedClassifier(base, sigma=0.5, n=9, vote="prediction", chunk_size=4, seed=2, top_k=3)
    # One histogram per rank position; slot r takes its most frequent class not yet taken.
    order = np.argsort(-logits, axis=-1, kind="stable")[..., :3]
    hist = np.stack([np.eye(K)[order[..., r]].sum(0) for r in range(3)], 1)  # [B, 3, K]
    expected = []
    for h in hist:
        chosen = []
        for r in range(3):
            row = h[r].copy()
            row[chosen] = -1
            chosen.append(int(row.argmax()))
        expected.append(chosen)
    np.testing.assert_array_equal(hard.predict_top_k(x).numpy(), expected)
    soft = SmoothedClassifier(base, sigma=0.5, n=9, vote="soft", chunk_size=4, seed=2)
    np.testing.assert_array_equal(soft.predict_top_k(x, k=2).numpy(),
                                  np.argsort(-logits.mean(0), axis=-1)[:, :2])


def test_vote_gradient_is_the_soft_smoothed_score(x):
    # Straight-through: the value is the vote, the gradient that of
    # log(mean softmax) over the same noisy passes.
    base = _base()
    xt = tf.constant(x)

    def grad(fn):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            out = tf.reduce_sum(fn(xt)[:, 1])
        return tape.gradient(out, xt).numpy()

    model = SmoothedClassifier(base, sigma=0.3, n=6, vote="prediction", chunk_size=4, seed=3)

    def soft_score(z):
        call_seed = tf.cast(keras.random.SeedGenerator(3).next() % (2**31 - 1), tf.int32)
        probs = []
        for i, d in enumerate((4, 2)):
            tiled = tf.tile(z, [d, 1, 1, 1])
            noise = tf.random.stateless_normal(tf.shape(tiled), seed=tf.random.experimental.stateless_fold_in(call_seed, i))
            probs.append(tf.reshape(tf.nn.softmax(base(tiled + 0.3 * noise)), [d, -1, K]))
        return tf.math.log(tf.reduce_mean(tf.concat(probs, 0), 0))

    np.testing.assert_allclose(grad(model), grad(soft_score), rtol=1e-4, atol=1e-6)
    assert np.abs(grad(model)).sum() > 0


def test_sigma_zero_is_the_base_and_noise_stays_on_at_inference(x):
    base = _base()
    logits = base(x).numpy()
    for vote in ("soft", "prediction", "weighted"):
        model = SmoothedClassifier(base, sigma=0.0, n=5, vote=vote, seed=0)
        assert np.array_equal(model(x).numpy().argmax(-1), logits.argmax(-1))
    np.testing.assert_allclose(SmoothedClassifier(base, sigma=0.0, n=3)(x).numpy(), logits, atol=1e-5)
    noisy = SmoothedClassifier(base, sigma=0.5, n=2, seed=0)
    assert not np.allclose(noisy(x).numpy(), noisy(x).numpy())          # fresh noise per call
    one = noisy(x, training=True).numpy()                                 # one noisy pass
    assert one.shape == (5, K) and not np.allclose(one, logits)
    assert declared_flag(noisy, "randomized") is True
    assert declared_flag(noisy, "optimizes_at_inference") is False


def test_knobs_variables_overrides_and_compiled_tensor_n(x):
    base = _base()
    model = SmoothedClassifier(base, sigma=0.3, n=4, vote="soft", seed=0)
    model.set_knobs(sigma=0.0, n=9)
    assert float(model.sigma.numpy()) == 0.0 and int(model.n.numpy()) == 9
    np.testing.assert_allclose(model(x).numpy(), base(x).numpy(), atol=1e-5)
    # A call-time override leaves the variables alone.
    assert not np.allclose(model(x, sigma=1.0).numpy(), base(x).numpy(), atol=1e-3)
    assert float(model.sigma.numpy()) == 0.0
    fn = tf.function(lambda z, n, s: model(z, n=n, sigma=s))
    out = fn(tf.constant(x), tf.constant(3), tf.constant(0.0))
    np.testing.assert_allclose(out.numpy(), base(x).numpy(), atol=1e-5)
    fn(tf.constant(x), tf.constant(11), tf.constant(0.2))  # another n, no retrace needed


def test_layer_contract_keras_and_savedmodel_round_trip():
    # sigma = 0 makes the model deterministic, so the harness can compare outputs.
    base = _base(shape=(6, 6, 1))
    run_layer_test(SmoothedClassifier, {"base": base, "sigma": 0.0, "n": 3, "vote": "soft"}, (2, 6, 6, 1),
                   expected_output_shape=(2, K), expected_num_trainable_weights=2,
                   reference_fn=lambda z: base(z).numpy(), tol=1e-4)


def test_keras_file_and_export_serve_knobs_at_serving_time(tmp_path, x):
    base = _base()
    model = SmoothedClassifier(base, sigma=0.0, n=2, vote="prediction", seed=0)
    expected = model(x).numpy()
    model.set_knobs(n=6)
    path = str(tmp_path / "smoothed.keras")
    model.save(path)
    loaded = tfrobust.load_model(path)
    assert isinstance(loaded, SmoothedClassifier) and int(loaded.n.numpy()) == 6
    assert loaded.vote == "prediction"
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5)
    loaded.set_knobs(sigma=0.7, n=40)
    served_path = loaded.export_with_knobs(str(tmp_path / "sm"))
    served = tf.saved_model.load(served_path)
    noisy = served.serve(tf.constant(x)).numpy()
    assert noisy.shape == (5, K) and not np.allclose(noisy, expected)
    # sigma and n chosen per request: sigma = 0 gives the base's vote again.
    same = served.serve_knobs(tf.constant(x), sigma=tf.constant(0.0), n=tf.constant(3)).numpy()
    np.testing.assert_allclose(same, expected, atol=1e-5)
    with_n = served.serve_knobs(tf.constant(x), sigma=tf.constant(0.7), n=tf.constant(1)).numpy()
    # one pass: every vote is 0 or 1, so the scores are 0 or log(1e-12)
    assert np.all(np.isclose(with_n, 0.0, atol=1e-5) | np.isclose(with_n, np.log(1e-12), atol=1e-3))
    np.testing.assert_array_equal(np.isclose(with_n, 0.0, atol=1e-5).sum(-1), 1)
    # tfrobust.load_model reads the export as a logits callable.
    assert tfrobust.load_model(served_path)(x).shape == (5, K)


def test_bad_arguments_name_the_argument(x):
    base = _base()
    for kwargs, name in [({"sigma": -0.1}, "sigma"), ({"n": 0}, "n"), ({"vote": "mean"}, "vote"),
                         ({"top_k": 0}, "top_k"), ({"chunk_size": 0}, "chunk_size"),
                         ({"seed": -1}, "seed"), ({"sigma": float("nan")}, "sigma")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            SmoothedClassifier(base, **kwargs)
    with pytest.raises(ValueError, match="`base`"):
        SmoothedClassifier(lambda z: z)
    model = SmoothedClassifier(base)
    with pytest.raises(ValueError, match="`n`"):
        model.set_knobs(n=0)
    with pytest.raises(ValueError, match="`sigma`"):
        model(x, sigma=-1.0)
    with pytest.raises(ValueError, match="`n`"):
        model(x, n=1.5)


def test_shared_noise_gives_every_image_the_same_draws(x):
    # share_noise: pass j of every image gets draw j, so copies of one image
    # vote identically; the reference draws [d, 1, ...] per chunk.
    base = _base()
    copies = np.repeat(x[:1], 4, axis=0)
    shared = SmoothedClassifier(base, sigma=0.4, n=7, vote="soft", chunk_size=3, seed=5, share_noise=True)
    out = shared(copies).numpy()
    np.testing.assert_allclose(out, np.repeat(out[:1], 4, axis=0), rtol=1e-6)
    independent = SmoothedClassifier(base, sigma=0.4, n=7, vote="soft", chunk_size=3, seed=5)(copies).numpy()
    assert not np.allclose(independent[0], independent[1])
    call_seed = tf.cast(keras.random.SeedGenerator(5).next() % (2**31 - 1), tf.int32)
    parts, done, i = [], 0, 0
    while done < 7:
        d = min(3, 7 - done)
        noise = tf.random.stateless_normal((d, 1, 4, 4, 1), seed=tf.random.experimental.stateless_fold_in(call_seed, i))
        noisy = (x[None] + 0.4 * noise.numpy()).reshape(-1, 4, 4, 1)
        parts.append(base(noisy).numpy().reshape(d, x.shape[0], K))
        done, i = done + d, i + 1
    model = SmoothedClassifier(base, sigma=0.4, n=7, vote="soft", chunk_size=3, seed=5, share_noise=True)
    np.testing.assert_allclose(model(x).numpy(), np.concatenate(parts).mean(0), rtol=1e-5, atol=1e-5)
    assert model.get_config()["share_noise"] is True
    with pytest.raises(ValueError, match="share_noise"):
        SmoothedClassifier(base, share_noise="yes")

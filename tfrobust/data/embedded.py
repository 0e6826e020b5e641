"""`digits`: the zero-download default, scikit-learn's bundled 8x8 digits.

scikit-learn ships the test set of the UCI "Optical Recognition of Handwritten
Digits" data inside the package: 1,797 real 8x8 images with 17 grey levels
(0..16), so tests and quick experiments run without any download. Pixels are
divided by 16, giving [0, 1].

The split is fixed and deterministic: within each class, the images are
permuted by `numpy.random.default_rng(20240607)` (one generator, classes in
order 0..9) and the first `round(0.8 * n_class)` go to "train", the rest to
"test". That gives 1,438 training and 359 test images, every class 80/20,
and the same split on every machine.

References:
    Alpaydin and Kaynak, "Optical Recognition of Handwritten Digits", UCI
    Machine Learning Repository, 1998.
"""

import numpy as np

from tfrobust.data import registry

SEED = 20240607
TRAIN_FRACTION = 0.8


def split_indices(labels, seed=SEED, train_fraction=TRAIN_FRACTION):
    """The stratified, seeded train/test split of `labels`' indices.

    Returns:
        `(train_idx, test_idx)`: sorted int64 index arrays, disjoint, covering
        every index.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(train_fraction * len(members)))
        train.append(members[:cut])
        test.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def read(split):
    """Loads one split of the embedded digits.

    Returns:
        `(x, y)`: float32 [N, 8, 8, 1] in [0, 1] and int64 [N].

    Raises:
        ImportError: if scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "The 'digits' dataset is scikit-learn's bundled copy; install "
            "scikit-learn (pip install scikit-learn) to use it."
        ) from e
    bunch = load_digits()
    # The bundled values are whole numbers 0..16 stored as float64.
    images = bunch.images.astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = split_indices(labels)
    idx = train_idx if split == "train" else test_idx
    return registry.finalize(images[idx], labels[idx], "digits",
                             "sklearn.datasets.load_digits", max_value=16)

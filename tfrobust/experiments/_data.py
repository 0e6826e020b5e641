"""The train/test split loading every training experiment starts with."""

__all__ = ["load_splits"]


def load_splits(config):
    """Train and test arrays of `config.dataset`, cut to `n_train` / `n_eval`.

    Args:
        config: has `dataset`, `data_dir`, `n_train` (None or 0: all) and
            `n_eval` (None: all).

    Returns:
        `(x, y, x_test, y_test, num_classes)`.
    """
    from tfrobust import data

    x, y = data.load(config.dataset, "train", data_dir=config.data_dir)
    if config.n_train:
        x, y = x[:config.n_train], y[:config.n_train]
    x_test, y_test = data.load(config.dataset, "test", data_dir=config.data_dir)
    x_test, y_test = x_test[:config.n_eval], y_test[:config.n_eval]
    return x, y, x_test, y_test, data.num_classes(config.dataset)

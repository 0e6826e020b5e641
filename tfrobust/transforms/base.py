"""The `input_transform` contract of `tfrobust.training.fit`, as a class."""

from tfrobust.training import inputs

__all__ = ["InputTransform"]


class InputTransform:
    """Base of the training-time input transforms.

    `fit` calls `transform(model, batch)` inside its compiled step with the
    whole dataset element (`(x, y, *aux)` or a dict with "x" and "y"); this
    base splits it and calls `apply(model, x, y)`, which subclasses
    implement and which can also be called directly. Subclasses that draw
    random numbers return their generators (or the attacks that own them)
    from `random_generators()`, so that `fit` reseeds them per epoch and a
    resumed run is exact.
    """

    #: Name under which `fit` and logs refer to the transform.
    name = "input_transform"

    def __call__(self, model, batch):
        x, y = inputs.split(batch, "batch")
        return self.apply(model, x, y)

    def apply(self, model, x, y):
        """Returns the transformed `(x, y)` (or `(x, y, sample_weight)`)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement apply(model, x, y).")

    def random_generators(self):
        """The generators (or owners of generators) this transform draws
        from; none by default."""
        return []

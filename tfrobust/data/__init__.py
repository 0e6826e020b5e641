"""Real image datasets as NumPy arrays and tf.data pipelines.

Four datasets, each with a "train" and a "test" split: `mnist` (10 classes,
28x28x1), `cifar10` (10, 32x32x3), `gtsrb` (43, 32x32x3) and `digits` (10,
8x8x1; scikit-learn's bundled 8x8 digits, embedded, no download). Images are
float32 NHWC in [0, 1], labels int64.

MNIST, CIFAR-10 and GTSRB are read from their official files (MNIST IDX,
CIFAR-10 binary or python version, extracted or as the .tar.gz, GTSRB's PPM
folders and CSV annotations) found in `data_dir`, then in the directory named
by the environment variable `TFROBUST_DATA_DIR`, then fetched with
`tensorflow_datasets` (MNIST and CIFAR-10 only; `download=False` turns this
off). Before downloading, one connection to the download host (at most
`loader.NETWORK_TIMEOUT` = 3 s) checks for a network, so offline the
`FileNotFoundError` comes in seconds and says where to put the files.
Every reader checks what it parses (magic numbers, sizes, label ranges,
pickle globals) and names the file and the problem in a `ValueError`.

Example:

```python
from tfrobust import data

x, y = data.load("digits", "train")        # (1438, 8, 8, 1), (1438,)
ds = data.load_dataset("digits", "test", batch_size=64, shuffle=False)
for x_batch, y_batch in ds.take(1):
    print(x_batch.shape, y_batch.shape)    # (64, 8, 8, 1) (64,)
x, y = data.load("mnist", "test", data_dir="path/to/data")  # mnist/ inside
print(data.num_classes("gtsrb"), data.input_shape("cifar10"))  # 43 (32, 32, 3)
```
"""

from tfrobust.data.loader import clear_cache, load
from tfrobust.data.pipeline import load_dataset, to_dataset
from tfrobust.data.registry import DATASETS, SPLITS, input_shape, num_classes

__all__ = [
    "DATASETS",
    "SPLITS",
    "clear_cache",
    "input_shape",
    "load",
    "load_dataset",
    "num_classes",
    "to_dataset",
]

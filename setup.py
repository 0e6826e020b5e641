"""Installs tfrobust. Runtime dependencies are the project's fixed stack plus
the few well-kept libraries the code uses (SciPy for statistics, Matplotlib
for report figures, Pillow for GTSRB's PPM files, scikit-learn only for its
bundled 8x8 digits, the zero-download demo dataset)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

_HERE = Path(__file__).parent
_VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (_HERE / "tfrobust" / "__init__.py").read_text(),
    re.M,
).group(1)

setup(
    name="tfrobust",
    version=_VERSION,
    description=(
        "Adversarial robustness for TensorFlow 2 / Keras 3 image classifiers: "
        "defenses, attacks in L1/L2/Linf, and certification."
    ),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfrobust", "tfrobust.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10",
        "tensorflow-probability>=0.25",
        # tensorflow-probability imports tf_keras at import time.
        "tf-keras==2.21.*",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets needs it to download but does not declare it.
        "importlib_resources>=6.0",
        "numba>=0.60",
        "absl-py>=2.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "matplotlib>=3.8",
        "pillow>=10.0",
        "scikit-learn>=1.4",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-xdist>=3.5"],
        # ART's AutoAttack imports multiprocess without declaring it.
        "bench": ["adversarial-robustness-toolbox>=1.17", "foolbox>=3.3", "multiprocess>=0.70"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

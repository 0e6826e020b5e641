"""GTSRB (German Traffic Sign Recognition Benchmark) from its official layout.

Training (GTSRB_Final_Training_Images.zip): one folder per class,
`GTSRB/Final_Training/Images/000NN/`, holding PPM images and `GT-000NN.csv`.
Test (GTSRB_Final_Test_Images.zip plus GTSRB_Final_Test_GT.zip):
`GTSRB/Final_Test/Images/*.ppm` and `GT-final_test.csv`, the annotation file
with the ClassId column (the images archive only ships
`GT-final_test.test.csv`, without labels). Annotation files are
`;`-separated with the columns Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;
Roi.Y2;ClassId.

Each image is cropped to its region of interest and resized to 32x32 with
Pillow's antialiasing (Lanczos) filter, as Hein & Andriushchenko's loader
resized GTSRB. The ROI corners are 0-based pixel indices, inclusive at both
ends (the benchmark's readme: the sign lies within them, with a margin of at
least 5 pixels around it), so the crop box is (X1, Y1, X2 + 1, Y2 + 1).

References:
    Stallkamp et al., "Man vs. computer: Benchmarking machine learning
    algorithms for traffic sign recognition", Neural Networks, 2012.
"""

import concurrent.futures
import csv
import glob
import os

import numpy as np

from tfrobust.data import registry

NUM_CLASSES = 43
SIZE = 32
COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2",
           "Roi.Y2", "ClassId")
_TRAIN_DIRS = (("GTSRB", "Final_Training", "Images"),
               ("Final_Training", "Images"))
_TEST_DIRS = (("GTSRB", "Final_Test", "Images"), ("Final_Test", "Images"))
TEST_CSV = "GT-final_test.csv"


def searched_names(split):
    """The folders `locate` looks for, for error messages."""
    if split == "train":
        return ["GTSRB/Final_Training/Images/000NN/GT-000NN.csv",
                "Final_Training/Images/000NN/GT-000NN.csv"]
    return [f"GTSRB/Final_Test/Images/*.ppm with {TEST_CSV}",
            f"Final_Test/Images/*.ppm with {TEST_CSV}"]


def read_annotations(csv_path):
    """Reads one GTSRB annotation file into a list of typed rows.

    Returns:
        A list of `(filename, width, height, x1, y1, x2, y2, class_id)`.

    Raises:
        ValueError: on missing columns, non-integer fields or no rows.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=";")
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"Expected the columns {list(COLUMNS)} in {csv_path}. "
                f"Received: header {header}, missing {missing}"
            )
        rows = []
        for line, record in enumerate(reader, start=2):
            try:
                numbers = tuple(int(record[c]) for c in COLUMNS[1:])
            except (TypeError, ValueError):
                raise ValueError(
                    f"Expected integer fields {list(COLUMNS[1:])} on line "
                    f"{line} of {csv_path}. Received: {dict(record)}"
                ) from None
            rows.append((record["Filename"],) + numbers)
    if not rows:
        raise ValueError(
            f"Expected at least one annotated image in {csv_path}. "
            f"Received: a header only"
        )
    return rows


def _check_rows(rows, folder, csv_path, class_id=None):
    paths = []
    for i, (filename, width, height, x1, y1, x2, y2, label) in enumerate(rows):
        where = f"line {i + 2} of {csv_path}"
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            raise ValueError(
                f"Expected the image {filename} listed on {where} to exist. "
                f"Received: no file at {path}"
            )
        if not (0 <= x1 <= x2 < width and 0 <= y1 <= y2 < height):
            raise ValueError(
                f"Expected a ROI with 0 <= Roi.X1 <= Roi.X2 < Width and "
                f"0 <= Roi.Y1 <= Roi.Y2 < Height on {where}. Received: ROI "
                f"({x1}, {y1}, {x2}, {y2}) outside the {width}x{height} image"
            )
        if not 0 <= label < NUM_CLASSES:
            raise ValueError(
                f"Expected ClassId in [0, {NUM_CLASSES}) on {where}. "
                f"Received: {label}"
            )
        if class_id is not None and label != class_id:
            raise ValueError(
                f"Expected ClassId {class_id} (the folder's class) on {where}. "
                f"Received: {label}"
            )
        paths.append(path)
    return paths


def _crop_resize(path, row, csv_path):
    # Imported here so that Pillow is only needed by GTSRB users.
    from PIL import Image

    _, width, height, x1, y1, x2, y2, _ = row
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, ValueError) as e:
        raise ValueError(
            f"Expected a readable PPM image at {path}. Received: {e}"
        ) from e
    if image.size != (width, height):
        raise ValueError(
            f"Expected {path} to be {width}x{height} as {csv_path} says. "
            f"Received: {image.size[0]}x{image.size[1]}"
        )
    crop = image.crop((x1, y1, x2 + 1, y2 + 1))
    crop = crop.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return np.asarray(crop, dtype=np.uint8)


def _decode(jobs):
    """Decodes `(path, row, csv_path)` jobs into a uint8 [N, 32, 32, 3] array.

    Pillow releases the GIL while decoding and resampling, so a few threads
    overlap file reads and resizing of the ~40k small images.
    """
    images = np.empty((len(jobs), SIZE, SIZE, 3), np.uint8)
    workers = min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i, image in enumerate(pool.map(lambda j: _crop_resize(*j), jobs)):
            images[i] = image
    return images


def _read_train(images_dir, class_dirs):
    jobs, labels = [], []
    for class_dir in class_dirs:
        class_id = int(os.path.basename(class_dir))
        csv_path = os.path.join(class_dir, f"GT-{class_id:05d}.csv")
        if not os.path.isfile(csv_path):
            raise ValueError(
                f"Expected the annotation file {csv_path} in class folder "
                f"{class_dir}. Received: no such file"
            )
        rows = read_annotations(csv_path)
        paths = _check_rows(rows, class_dir, csv_path, class_id=class_id)
        jobs += [(p, r, csv_path) for p, r in zip(paths, rows)]
        labels += [r[-1] for r in rows]
    return registry.finalize(_decode(jobs), np.asarray(labels, np.int64),
                             "gtsrb", images_dir)


def _read_test(images_dir, csv_path):
    rows = read_annotations(csv_path)
    paths = _check_rows(rows, images_dir, csv_path)
    jobs = [(p, r, csv_path) for p, r in zip(paths, rows)]
    labels = np.asarray([r[-1] for r in rows], np.int64)
    return registry.finalize(_decode(jobs), labels, "gtsrb", images_dir)


def _test_csv(base, images_dir):
    # GT-final_test.csv comes in its own zip; users unzip it next to the
    # images, one level up, or at the top of the dataset folder.
    candidates = [os.path.join(images_dir, TEST_CSV),
                  os.path.join(os.path.dirname(images_dir), TEST_CSV),
                  os.path.join(base, "GTSRB", TEST_CSV),
                  os.path.join(base, TEST_CSV)]
    return next((c for c in candidates if os.path.isfile(c)), None)


def locate(base, split):
    """Finds the official GTSRB layout for `split` inside `base`.

    Returns:
        A `registry.Source`, or None when the layout is not there.

    Raises:
        FileNotFoundError: when the test images are there but the labelled
            annotation file `GT-final_test.csv` is not.
    """
    if split == "train":
        for parts in _TRAIN_DIRS:
            images_dir = os.path.join(base, *parts)
            class_dirs = sorted(
                d for d in glob.glob(os.path.join(images_dir, "[0-9]" * 5))
                if os.path.isdir(d)
            )
            if class_dirs:
                csvs = [os.path.join(d, f"GT-{os.path.basename(d)}.csv")
                        for d in class_dirs]
                return registry.Source(
                    location=images_dir,
                    files=tuple(class_dirs) + tuple(csvs),
                    read=lambda d=images_dir, c=class_dirs: _read_train(d, c),
                )
        return None
    for parts in _TEST_DIRS:
        images_dir = os.path.join(base, *parts)
        if not glob.glob(os.path.join(images_dir, "*.ppm")):
            continue
        csv_path = _test_csv(base, images_dir)
        if csv_path is None:
            raise FileNotFoundError(
                f"Found GTSRB test images in {images_dir} but not the labelled "
                f"annotation file {TEST_CSV} (GT-final_test.test.csv has no "
                f"ClassId). Unzip GTSRB_Final_Test_GT.zip into {images_dir}."
            )
        return registry.Source(
            location=images_dir,
            files=(images_dir, csv_path),
            read=lambda d=images_dir, c=csv_path: _read_test(d, c),
        )
    return None

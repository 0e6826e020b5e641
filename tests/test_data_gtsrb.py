"""tfrobust.data's GTSRB reader on a tiny official-layout tree written here."""

import os

import numpy as np
import pytest
from PIL import Image

from tfrobust import data

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
RED, GREEN, BLUE = (250, 0, 0), (0, 250, 0), (0, 0, 250)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv("TFROBUST_DATA_DIR", raising=False)
    data.clear_cache()
    yield
    data.clear_cache()


def sign(width=31, height=29, roi=(5, 6, 24, 22)):
    """A blue image whose ROI is red, except its last ROI column (green)."""
    x1, y1, x2, y2 = roi
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = BLUE
    pixels[y1:y2 + 1, x1:x2 + 1] = RED
    pixels[y1:y2 + 1, x2] = GREEN
    return pixels


def write_image(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, format="PPM")


def csv_text(rows, header=HEADER):
    return "\n".join([header] + [";".join(map(str, r)) for r in rows]) + "\n"


def write_train(root, classes=(0, 1, 42), per_class=2, roi=(5, 6, 24, 22)):
    """Official training layout; `roi` is what the CSV files claim."""
    images_dir = os.path.join(root, "GTSRB", "Final_Training", "Images")
    for c in classes:
        folder = os.path.join(images_dir, f"{c:05d}")
        rows = []
        for k in range(per_class):
            name = f"{k:05d}_{0:05d}.ppm"
            write_image(os.path.join(folder, name), sign())
            rows.append((name, 31, 29) + roi + (c,))
        with open(os.path.join(folder, f"GT-{c:05d}.csv"), "w") as f:
            f.write(csv_text(rows))
    return images_dir


def write_test(root, labels=(3, 0, 42), csv_dir=None):
    images_dir = os.path.join(root, "GTSRB", "Final_Test", "Images")
    rows = []
    for k, label in enumerate(labels):
        name = f"{k:05d}.ppm"
        write_image(os.path.join(images_dir, name), sign())
        rows.append((name, 31, 29, 5, 6, 24, 22, label))
    with open(os.path.join(csv_dir or images_dir, "GT-final_test.csv"), "w") as f:
        f.write(csv_text(rows))
    return images_dir


def test_train_layout(tmp_path):
    write_train(tmp_path / "gtsrb")
    x, y = data.load("gtsrb", "train", data_dir=tmp_path)
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 1, 1, 42, 42]
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_roi_crop_is_inclusive_and_excludes_border(tmp_path):
    write_train(tmp_path, classes=(7,), per_class=1)
    x, _ = data.load("gtsrb", "train", data_dir=tmp_path)
    pixels = np.round(x[0] * 255)
    # No blue border survives the crop, the interior is the red sign ...
    assert pixels[..., 2].max() <= 30
    np.testing.assert_allclose(pixels[16, 4], RED, atol=30)
    # ... and the last ROI column (X2, inclusive) is kept: green on the right.
    assert pixels[16, -1, 1] > 150 and pixels[16, -1, 0] < 100


def test_test_layout_with_separate_gt_file(tmp_path):
    images_dir = write_test(tmp_path, csv_dir=os.path.join(tmp_path, "GTSRB"))
    # The unlabeled annotation file of the images zip is ignored.
    with open(os.path.join(images_dir, "GT-final_test.test.csv"), "w") as f:
        f.write("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n")
    x, y = data.load("gtsrb", "test", data_dir=tmp_path)
    assert x.shape == (3, 32, 32, 3)
    assert y.tolist() == [3, 0, 42]


def test_test_layout_without_labels(tmp_path):
    images_dir = write_test(tmp_path)
    os.remove(os.path.join(images_dir, "GT-final_test.csv"))
    with pytest.raises(FileNotFoundError, match="GT-final_test.csv"):
        data.load("gtsrb", "test", data_dir=tmp_path)


def test_missing_columns(tmp_path):
    images_dir = write_test(tmp_path)
    with open(os.path.join(images_dir, "GT-final_test.csv"), "w") as f:
        f.write(csv_text([("00000.ppm", 31, 29, 5, 6, 24, 22)],
                         header="Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2"))
    with pytest.raises(ValueError, match=r"GT-final_test.csv.*missing \['ClassId'\]"):
        data.load("gtsrb", "test", data_dir=tmp_path)


def test_missing_image_file(tmp_path):
    write_train(tmp_path)
    images_dir = tmp_path / "GTSRB" / "Final_Training" / "Images"
    os.remove(images_dir / "00001" / "00001_00000.ppm")
    with pytest.raises(ValueError, match=r"00001_00000.ppm.*GT-00001.csv.*to exist"):
        data.load("gtsrb", "train", data_dir=tmp_path)


@pytest.mark.parametrize("roi", [(5, 6, 31, 22), (5, 6, 24, 29), (-1, 6, 24, 22),
                                 (20, 6, 10, 22)])
def test_roi_outside_image(tmp_path, roi):
    write_train(tmp_path, classes=(2,), per_class=1, roi=roi)
    with pytest.raises(ValueError, match=r"GT-00002.csv.*ROI"):
        data.load("gtsrb", "train", data_dir=tmp_path)


def test_class_id_disagrees_with_folder(tmp_path):
    images_dir = write_train(tmp_path, classes=(4,), per_class=1)
    with open(os.path.join(images_dir, "00004", "GT-00004.csv"), "w") as f:
        f.write(csv_text([("00000_00000.ppm", 31, 29, 5, 6, 24, 22, 5)]))
    with pytest.raises(ValueError, match=r"ClassId 4 .*Received: 5"):
        data.load("gtsrb", "train", data_dir=tmp_path)


def test_class_id_out_of_range(tmp_path):
    write_test(tmp_path, labels=(1, 43))
    with pytest.raises(ValueError, match=r"ClassId in \[0, 43\).*Received: 43"):
        data.load("gtsrb", "test", data_dir=tmp_path)


def test_non_integer_field(tmp_path):
    images_dir = write_test(tmp_path)
    with open(os.path.join(images_dir, "GT-final_test.csv"), "w") as f:
        f.write(csv_text([("00000.ppm", 31, "wide", 5, 6, 24, 22, 1)]))
    with pytest.raises(ValueError, match=r"integer fields.*line 2"):
        data.load("gtsrb", "test", data_dir=tmp_path)


def test_image_size_disagrees_with_csv(tmp_path):
    images_dir = write_test(tmp_path, labels=(1,))
    write_image(os.path.join(images_dir, "00000.ppm"), sign(width=40))
    with pytest.raises(ValueError, match=r"00000.ppm.*31x29.*Received: 40x29"):
        data.load("gtsrb", "test", data_dir=tmp_path)


def test_missing_class_csv(tmp_path):
    images_dir = write_train(tmp_path, classes=(0, 1))
    os.remove(os.path.join(images_dir, "00001", "GT-00001.csv"))
    with pytest.raises(ValueError, match=r"GT-00001.csv"):
        data.load("gtsrb", "train", data_dir=tmp_path)


def test_not_found_says_tfds_has_no_gtsrb(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)Final_Training.*has no GTSRB"):
        data.load("gtsrb", "train", data_dir=tmp_path)

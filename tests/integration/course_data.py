"""Tiny data sets in the official formats of CIFAR-10 (python batches in
cifar-10-python.tar.gz), MNIST (gzipped IDX) and the California housing CSV,
for tests/integration/test_course.py. Classes are made learnable (each class
has its own colour / stroke / price level) so that accuracy means something.
"""
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np


def cifar10_batches(per_batch=40, test=40, seed=0):
    """{file name: pickled bytes} for data_batch_1..5 and test_batch."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(10, 3))

    def batch(n, label):
        labels = rng.integers(0, 10, size=n)
        imgs = np.clip(palette[labels][:, :, None, None] + rng.normal(0, 40, size=(n, 3, 32, 32)), 0, 255)
        return pickle.dumps({b"batch_label": label.encode(), b"labels": labels.tolist(),
                             b"data": imgs.astype(np.uint8).reshape(n, 3072),
                             b"filenames": [b"img%d.png" % i for i in range(n)]}, protocol=2)

    files = {"data_batch_%d" % i: batch(per_batch, "training batch %d of 5" % i) for i in range(1, 6)}
    files["test_batch"] = batch(test, "testing batch 1 of 1")
    files["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]}, protocol=2)
    return files


def cifar10_tarball(path, **kw):
    """Writes cifar-10-python.tar.gz (members under cifar-10-batches-py/) to path."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in cifar10_batches(**kw).items():
            info = tarfile.TarInfo("cifar-10-batches-py/" + name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def idx(array):
    """IDX bytes of a uint8 array (type 0x08)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def mnist_files(folder, train=200, test=50, seed=1):
    """Writes the four gzipped IDX files of MNIST into folder."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)

    def digits(n):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        imgs = rng.integers(0, 40, size=(n, 28, 28))
        for i, d in enumerate(labels):
            imgs[i, 2 + 2 * d:5 + 2 * d, 4:24] = 255  # a bar whose height says the digit
        return imgs.astype(np.uint8), labels

    for prefix, n in (("train", train), ("t10k", test)):
        x, y = digits(n)
        with gzip.open(os.path.join(folder, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
            f.write(idx(x))
        with gzip.open(os.path.join(folder, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(idx(y))
    return folder


HOUSING_COLUMNS = ["longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms", "population",
                   "households", "median_income", "median_house_value", "ocean_proximity"]


def housing_csv(path, rows=300, seed=2):
    """A housing.csv with the columns (and a few missing total_bedrooms) of the real one."""
    rng = np.random.default_rng(seed)
    cats = ["<1H OCEAN", "INLAND", "NEAR BAY", "NEAR OCEAN"]
    lines = [",".join(HOUSING_COLUMNS)]
    for i in range(rows):
        income = rng.uniform(0.5, 15)
        rooms = int(rng.integers(500, 6000))
        value = min(500001, 40000 * income + rng.normal(0, 20000) + 60000)
        bedrooms = "" if i % 50 == 7 else str(int(rooms * rng.uniform(0.15, 0.25)))
        lines.append("%.2f,%.2f,%d,%d,%s,%d,%d,%.4f,%.1f,%s" % (
            rng.uniform(-124, -114), rng.uniform(32, 42), rng.integers(1, 52), rooms, bedrooms,
            rng.integers(100, 5000), rng.integers(50, 1500), income, value, cats[i % len(cats)]))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path

"""Datasets that stay: the course data sets, read from their official files.

Each loader finds its files, in this order:

1. ``/datasets/<name>`` -- provided by the administrator for everyone
   (``skylab dataset add NAME PATH``), read-only;
2. ``~/.cache/skylab/datasets/<name>`` -- the user's persistent cache, kept
   across runtimes;
3. else it downloads the official files ONCE into that cache (with a
   progress bar, checksums verified where the publisher gives them, into a
   temporary file renamed into place only when complete).

So a second runtime of the same user, or any user when the administrator
provided the data, reads from disk and downloads nothing.

    from skylab import datasets
    (x_train, y_train), (x_test, y_test) = datasets.cifar10()   # uint8 NHWC, int64 labels
    (x_train, y_train), (x_test, y_test) = datasets.mnist()     # uint8 NHW
    frame = datasets.california_housing()                       # pandas DataFrame

Environment:
  SKYLAB_DATASET_MIRROR   base URL that replaces the official hosts; files are
                          fetched from MIRROR/<name>/<file> (a local copy for
                          offline sites and tests)
  SKYLAB_DATASET_VERIFY   "0": do not check MD5 sums (a mirror with other files)
  SKYLAB_DATASETS_DIR     where admin datasets are (default /datasets)
  SKYLAB_DATASET_CACHE    the cache (default ~/.cache/skylab/datasets)
"""
import gzip
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request

import numpy as np

__all__ = ["cifar10", "mnist", "california_housing", "locate", "CIFAR10_CLASSES", "DatasetError"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


class DatasetError(RuntimeError):
    """A data set could not be found, downloaded or read."""


# name -> official files: (file name, URL, MD5 published by the source or None)
_SOURCES = {
    # Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
    "cifar10": [("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                 "c58f30108f718f92721af3b95e74349a")],
    # Yann LeCun, Corinna Cortes, Christopher J.C. Burges: the MNIST database. The original
    # host refuses scripted downloads; these are the same files (same MD5s) as mirrored by PyTorch.
    "mnist": [(f, "https://ossci-datasets.s3.amazonaws.com/mnist/" + f, md5) for f, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    )],
    # R. Kelley Pace and Ronald Barry, "Sparse Spatial Autoregressions", 1997 (StatLib), as the
    # CSV of A. Geron's "Hands-On Machine Learning" (one row per 1990 census block group).
    "california_housing": [("housing.csv",
                            "https://raw.githubusercontent.com/ageron/handson-ml2/master/datasets/housing/housing.csv",
                            None)],
}


def _admin_root():
    return os.environ.get("SKYLAB_DATASETS_DIR", "/datasets")


def _cache_root():
    return os.environ.get("SKYLAB_DATASET_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "skylab", "datasets"))


def _say(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- finding files

def _find(root, names):
    """The folder below `root` (itself, or one level down) holding every one of
    `names` (each may also be present gzipped), or None."""
    if not os.path.isdir(root):
        return None
    candidates = [root] + sorted(os.path.join(root, d) for d in os.listdir(root)
                                 if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    for c in candidates:
        if all(os.path.exists(os.path.join(c, n)) or os.path.exists(os.path.join(c, n + ".gz")) for n in names):
            return c
    return None


def locate(name, needed, download=True):
    """The folder with the files `needed` of data set `name`: the admin's, the
    cache's, or a fresh download into the cache. Prints where it comes from."""
    admin = os.path.join(_admin_root(), name)
    found = _find(admin, needed)
    if found:
        _say(f"{name}: using the copy provided by the administrator in {found}")
        return found
    cache = os.path.join(_cache_root(), name)
    found = _find(cache, needed)
    if found:
        _say(f"{name}: using the cached copy in {found} (no download)")
        return found
    if os.path.isdir(admin) and all(os.path.exists(os.path.join(admin, f)) for f, _, _ in _SOURCES.get(name, [])):
        # The administrator provided the official archive: unpack it into the cache.
        _say(f"{name}: unpacking the administrator's files from {admin} into {cache}")
        _download(name, cache, local_dir=admin)
        return _find(cache, needed)
    if not download:
        raise DatasetError(f"{name} is neither in {admin} nor in {cache}")
    _download(name, cache)
    found = _find(cache, needed)
    if not found:
        raise DatasetError(f"{name}: the downloaded files do not contain {', '.join(needed)}")
    return found


# ---------------------------------------------------------------- downloading

def _url_for(name, filename, official):
    mirror = os.environ.get("SKYLAB_DATASET_MIRROR", "").rstrip("/")
    return f"{mirror}/{name}/{filename}" if mirror else official


def _progress(done, total, label, state):
    width = 30
    if total:
        pct = done / total
        bar = "#" * int(pct * width)
        line = f"\r{label}: [{bar:<{width}}] {pct * 100:5.1f}% of {total / 1e6:.1f} MB"
    else:
        line = f"\r{label}: {done / 1e6:.1f} MB"
    if line != state.get("last"):
        sys.stdout.write(line)
        sys.stdout.flush()
        state["last"] = line


def _fetch(url, dest_dir, filename, md5):
    """Downloads url to dest_dir/filename: into a temporary file in the same
    folder, verified, then renamed (a half download never looks complete)."""
    fd, tmp = tempfile.mkstemp(prefix="." + filename + ".", suffix=".part", dir=dest_dir)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(url, headers={"User-Agent": "skylab-datasets"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                done, state = 0, {}
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    _progress(done, total, "downloading " + filename, state)
                sys.stdout.write("\n")
                if total and done != total:
                    raise DatasetError(f"{url}: got {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        verify = os.environ.get("SKYLAB_DATASET_VERIFY", "1") != "0"
        if md5 and verify and digest.hexdigest() != md5:
            raise DatasetError(f"{url}: MD5 {digest.hexdigest()} is not the published {md5}; "
                               "the file was not kept")
        os.replace(tmp, os.path.join(dest_dir, filename))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _download(name, cache, local_dir=None):
    """Fetches every file of `name` (from `local_dir` when given) into the cache
    folder and unpacks archives. The folder appears (renamed from a temporary
    one) only when complete."""
    parent = os.path.dirname(cache)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="." + name + ".", suffix=".part", dir=parent)
    try:
        for filename, official, md5 in _SOURCES[name]:
            if local_dir:
                shutil.copyfile(os.path.join(local_dir, filename), os.path.join(work, filename))
                url = None
            else:
                url = _url_for(name, filename, official)
            if url:
                _say(f"{name}: downloading {url} into your cache (once; later runtimes reuse it)")
                try:
                    _fetch(url, work, filename, md5)
                except (OSError, ValueError) as e:
                    raise DatasetError(f"{name}: cannot download {url}: {e}") from e
            if filename.endswith((".tar.gz", ".tgz")):
                path = os.path.join(work, filename)
                with tarfile.open(path) as tar:
                    for m in tar.getmembers():
                        if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                            raise DatasetError(f"{name}: unsafe entry {m.name!r} in {filename}")
                    tar.extractall(work)
                os.unlink(path)
        try:
            os.rename(work, cache)
        except OSError:
            if not os.path.isdir(cache):  # else another runtime finished first: use theirs
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- formats

def _open_maybe_gz(folder, filename):
    path = os.path.join(folder, filename)
    if os.path.exists(path):
        return gzip.open(path, "rb") if filename.endswith(".gz") else open(path, "rb")
    return gzip.open(path + ".gz", "rb")


def read_idx(f):
    """One array from an IDX file (the MNIST format: magic 0 0 type ndim, big-endian
    dimensions, then the data)."""
    header = f.read(4)
    if len(header) != 4 or header[0] != 0 or header[1] != 0:
        raise DatasetError("not an IDX file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if header[2] not in dtypes:
        raise DatasetError(f"IDX: unknown data type 0x{header[2]:02x}")
    ndim = header[3]
    shape = tuple(int.from_bytes(f.read(4), "big") for _ in range(ndim))
    dtype = np.dtype(dtypes[header[2]])
    data = np.frombuffer(f.read(), dtype=dtype)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"IDX: {data.size} values for shape {shape}")
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def _limit(x, y, n):
    return (x, y) if n is None else (x[:n], y[:n])


def cifar10(limit_train=None, limit_test=None):
    """CIFAR-10 from the official python batches (cifar-10-batches-py):
    ((x_train, y_train), (x_test, y_test)) with x uint8 of shape (N, 32, 32, 3)
    and y int64 class indices (names in CIFAR10_CLASSES)."""
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    folder = locate("cifar10", batches + ["test_batch"])

    def load(fname):
        with _open_maybe_gz(folder, fname) as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    parts = [load(b) for b in batches]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = load("test_batch")
    return _limit(x_train, y_train, limit_train), _limit(x_test, y_test, limit_test)


def mnist(limit_train=None, limit_test=None):
    """MNIST from the official IDX files (optionally gzipped):
    ((x_train, y_train), (x_test, y_test)) with x uint8 (N, 28, 28), y int64."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    folder = locate("mnist", names)
    arrays = []
    for n in names:
        with _open_maybe_gz(folder, n) as f:
            arrays.append(read_idx(f))
    x_train, y_train, x_test, y_test = arrays
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DatasetError("MNIST: images and labels differ in number")
    return (_limit(x_train, y_train.astype(np.int64), limit_train),
            _limit(x_test, y_test.astype(np.int64), limit_test))


def california_housing(limit=None):
    """The California housing data (1990 census block groups) as a pandas
    DataFrame: longitude, latitude, housing_median_age, total_rooms,
    total_bedrooms, population, households, median_income,
    median_house_value (the target), ocean_proximity."""
    import pandas as pd
    folder = locate("california_housing", ["housing.csv"])
    with _open_maybe_gz(folder, "housing.csv") as f:
        frame = pd.read_csv(f)
    return frame if limit is None else frame.iloc[:limit]

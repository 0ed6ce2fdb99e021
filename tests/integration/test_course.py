"""The course notebooks (examples/), end to end in Skylab runtimes: the three
notebooks run with `skylab run --runtime cpu` on tiny data sets in the
official formats; datasets come from the admin's /datasets or the user's
cache and are downloaded once (a local mirror counts the requests); training
cut by the runtime's maximum lifetime resumes from the expiry hook's
checkpoint and ends where an uninterrupted run ends; the examples gallery API.

Run with Debian's python: /usr/bin/python3 -m pytest tests/integration/test_course.py
"""
import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import datetime

import pytest
import requests

from conftest import SERVER_KIND, FakeInternet, needs_sandbox, skylab_bin
import course_data

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NOTEBOOKS = ["cifar10_cnn", "mnist_dense", "house_prices_regression"]

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes and examples")




# ---------------------------------------------------------------- a counting mirror

class Mirror:
    """A static HTTP server on 127.0.0.1 that counts GET requests per path
    (for unsandboxed runtimes, which share the host's network)."""

    def __init__(self, root):
        self.root = root
        self.counts = {}
        lock = threading.Lock()
        counts = self.counts

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    counts[self.path] = counts.get(self.path, 0) + 1
                return super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def count(self, prefix):
        return sum(n for p, n in self.counts.items() if p.startswith(prefix))

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def course():
    """A data directory, the tiny data sets (on the mirror and in a folder for
    `skylab dataset add`) and the mirror."""
    tmp = tempfile.mkdtemp(prefix="skylab-course-")
    root = os.path.join(tmp, "mirror")
    for name in ("cifar10", "mnist", "california_housing"):
        os.makedirs(os.path.join(root, name))
    course_data.cifar10_tarball(os.path.join(root, "cifar10", "cifar-10-python.tar.gz"))
    course_data.mnist_files(os.path.join(root, "mnist"))
    course_data.housing_csv(os.path.join(root, "california_housing", "housing.csv"))
    # Sandboxed runtimes have their own network (NAT, no host loopback): the
    # mirror is then a host of its own, as the real internet would be.
    mirror = FakeInternet(root) if FakeInternet.available() else Mirror(root)
    ns = type("Course", (), {})()
    ns.tmp, ns.mirror, ns.mirror_root = tmp, mirror, root
    ns.data_dir = os.path.join(tmp, "data")
    ns.config = write(os.path.join(tmp, "skylab.toml"), '[runtimes]\nsandbox = "bwrap"\n')
    yield ns
    mirror.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def drive(course, user, *parts):
    return os.path.join(course.data_dir, "drive", user, *parts)


def put_in_drive(course, user, name, src):
    os.makedirs(drive(course, user), exist_ok=True)
    shutil.copy(src, drive(course, user, name))


def picture(path):
    from PIL import Image
    import numpy as np
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[:, :, 2] = 200  # a blue picture (a ship, perhaps)
    Image.fromarray(img).save(path)
    return path


def run_notebook(course, name, user, params, config=None, timeout=240, expect_ok=True):
    """`skylab run --runtime cpu` of examples/NAME.ipynb as `user`; returns
    (completed process, executed notebook)."""
    out = os.path.join(course.tmp, "%s-%s-%d.out.ipynb" % (name, user, len(os.listdir(course.tmp))))
    argv = [skylab_bin(), "run", str(EXAMPLES / (name + ".ipynb")), "-o", out, "--runtime", "cpu",
            "--data-dir", course.data_dir, "--user", user, "--config", config or course.config]
    for k, v in params.items():
        argv += ["-p", k, str(v)]
    env = dict(os.environ, SKYLAB_DATASET_MIRROR=course.mirror.url, SKYLAB_DATASET_VERIFY="0")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    nb = json.load(open(out)) if os.path.exists(out) else None
    if expect_ok:
        assert r.returncode == 0, r.stderr[-4000:]
    return r, nb


def stream_text(nb, name=None):
    out = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            if o["output_type"] == "stream" and (name is None or o["name"] == name):
                out.append(o["text"] if isinstance(o["text"], str) else "".join(o["text"]))
    return "".join(out)


def all_text(nb):
    out = [stream_text(nb)]
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            if o["output_type"] in ("execute_result", "display_data"):
                t = o["data"].get("text/plain", "")
                out.append(t if isinstance(t, str) else "".join(t))
    return "\n".join(out)


def images(nb):
    return sum(1 for c in nb["cells"] for o in c.get("outputs", [])
               if o["output_type"] == "display_data" and "image/png" in o["data"])


def number(text, label):
    m = re.search(re.escape(label) + r"\s*([0-9.]+)", text)
    assert m, "%r not in the output:\n%s" % (label, text[-3000:])
    return float(m.group(1))


def check_model_files(folder, name):
    """The architecture JSON and the weights exist, and rebuild the model."""
    sys.path.insert(0, str(REPO / "python"))
    try:
        from skylab.train import load_model
    finally:
        sys.path.pop(0)
    desc = json.load(open(os.path.join(folder, name + ".json")))
    assert desc["class_name"] == "Sequential" and desc["backend"] == "pytorch"
    model, extra = load_model(folder, name)
    return desc, model, extra


# ---------------------------------------------------------------- the notebooks

def test_notebooks_are_clean_nbformat_v4():
    import nbformat
    for name in NOTEBOOKS:
        path = EXAMPLES / (name + ".ipynb")
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name + " is stored with outputs"
        assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1, name
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= 6, name + ": explain it like a course"
        src = "\n".join(c.source for c in code)
        assert "torch.cuda.is_available()" in src and "!nvidia-smi" in src
        assert "from skylab import datasets, files" in src and "files.download(" in src and "files.upload()" in src
        assert "ImportError" not in src
        assert nb.metadata["skylab"]["title"] and nb.metadata["skylab"]["description"]


@needs_sandbox
def test_cifar10_downloads_once_trains_saves_and_classifies(course):
    user = "alice"
    put_in_drive(course, user, "ship.png", picture(os.path.join(course.tmp, "ship.png")))
    params = {"EPOCHS": 1, "OUTPUT_DIR": "/content/drive/course/cifar10", "IMAGE_PATH": "/content/drive/ship.png"}
    r, nb = run_notebook(course, "cifar10_cnn", user, params)
    text = all_text(nb)
    assert "Using device: cpu" in text
    assert "downloading %s/cifar10/cifar-10-python.tar.gz" % course.mirror.url in text
    assert course.mirror.count("/cifar10/") == 1
    assert "training pictures: (200, 32, 32, 3)" in text
    assert 0 <= number(text, "Test accuracy:") <= 1
    assert number(text, "Test loss:") > 0
    assert "Epoch 1/1" in stream_text(nb, "stderr")  # the tqdm bar
    assert re.search(r"Prediction: (airplane|automobile|bird|cat|deer|dog|frog|horse|ship|truck) \(", text)
    assert images(nb) >= 3  # samples, curves, the uploaded picture
    assert "Download cifar10_cnn.pt" in text and "Download cifar10_cnn.json" in text  # files.download, headless
    # The model is on the Drive: architecture JSON (like Keras' to_json) + weights.
    desc, model, extra = check_model_files(drive(course, user, "course", "cifar10"), "cifar10_cnn")
    kinds = [layer["class_name"] for layer in desc["config"]["layers"]]
    assert kinds.count("Conv2d") == 4 and kinds.count("MaxPool2d") == 2 and kinds.count("Linear") == 2
    assert [layer["config"]["out_channels"] for layer in desc["config"]["layers"] if layer["class_name"] == "Conv2d"] \
        == [32, 32, 64, 64]
    assert [layer["config"]["out_features"] for layer in desc["config"]["layers"]
            if layer["class_name"] == "Linear"] == [512, 10]
    assert extra["classes"][8] == "ship"
    # The dataset stays in the user's persistent cache ...
    cache = os.path.join(course.data_dir, "cache", user, "cache", "skylab", "datasets", "cifar10")
    assert os.path.isfile(os.path.join(cache, "cifar-10-batches-py", "data_batch_5"))

    # ... so a new runtime of the same user reads it from there: no second download.
    params["OUTPUT_DIR"] = "/content/drive/course/cifar10-again"
    r, nb = run_notebook(course, "cifar10_cnn", user, params)
    assert "cifar10: using the cached copy" in all_text(nb)
    assert course.mirror.count("/cifar10/") == 1
    assert os.path.isfile(drive(course, user, "course", "cifar10-again", "cifar10_cnn.pt"))


@needs_sandbox
def test_admin_dataset_is_never_fetched(course):
    # The operator provides MNIST for everyone.
    src = course_data.mnist_files(os.path.join(course.tmp, "mnist-src"))
    r = subprocess.run([skylab_bin(), "dataset", "add", "mnist", src, "--data-dir", course.data_dir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "runtimes see /datasets/mnist" in r.stdout
    listing = json.loads(subprocess.run([skylab_bin(), "dataset", "list", "--json", "--data-dir", course.data_dir],
                                        capture_output=True, text=True, check=True).stdout)
    assert [(d["name"], d["files"]) for d in listing] == [("mnist", 4)]
    # Adding it again needs --replace; nothing changes without.
    r = subprocess.run([skylab_bin(), "dataset", "add", "mnist", src, "--data-dir", course.data_dir],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--replace" in r.stderr
    r = subprocess.run([skylab_bin(), "dataset", "add", "../x", src, "--data-dir", course.data_dir],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert sorted(os.listdir(os.path.join(course.data_dir, "datasets"))) == ["mnist"]

    for user in ("bob", "carol"):  # any user, no download for either
        put_in_drive(course, user, "digit.png", picture(os.path.join(course.tmp, "digit.png")))
        r, nb = run_notebook(course, "mnist_dense", user, {
            "EPOCHS": 2, "OUTPUT_DIR": "/content/drive/mnist", "IMAGE_PATH": "/content/drive/digit.png"})
        text = all_text(nb)
        assert "mnist: using the copy provided by the administrator in /datasets/mnist" in text
        assert "training pictures: (200, 28, 28)" in text
        assert 0 <= number(text, "Test accuracy:") <= 1 and number(text, "Test loss:") >= 0
        assert re.search(r"Prediction: \d \(", text)
        assert images(nb) >= 3
        check_model_files(drive(course, user, "mnist"), "mnist_dense")
        assert not os.path.exists(os.path.join(course.data_dir, "cache", user, "cache", "skylab", "datasets", "mnist"))
    assert course.mirror.count("/mnist/") == 0


@needs_sandbox
def test_house_prices_regression(course):
    user = "dora"
    rows = os.path.join(course.tmp, "districts.csv")
    write(rows, ",".join(c for c in course_data.HOUSING_COLUMNS if c != "median_house_value") + "\n"
          "-122.23,37.88,41,880,129,322,126,8.3252,NEAR BAY\n"
          "-118.30,34.26,30,1500,,1200,400,2.1,INLAND\n")
    put_in_drive(course, user, "districts.csv", rows)
    r, nb = run_notebook(course, "house_prices_regression", user, {
        "EPOCHS": 3, "OUTPUT_DIR": "/content/drive/houses", "PREDICT_CSV": "/content/drive/districts.csv"})
    text = all_text(nb)
    assert course.mirror.count("/california_housing/housing.csv") == 1
    assert "(300, 10)" in text
    assert number(text, "Test loss (MSE):") > 0 and number(text, "Test MAE:") > 0
    assert "predicted_value" in text  # the uploaded districts, priced
    assert images(nb) >= 2
    desc, model, extra = check_model_files(drive(course, user, "houses"), "house_prices")
    assert len(extra["columns"]) == len(extra["mean"]) == desc["config"]["layers"][0]["config"]["in_features"]


def test_download_is_verified_and_atomic(tmp_path):
    """Outside a runtime: a file whose MD5 is not the published one is not
    kept, and no half dataset is left in the cache; a good download lands
    once and is then read from the cache."""
    root = tmp_path / "mirror"
    (root / "cifar10").mkdir(parents=True)
    course_data.cifar10_tarball(str(root / "cifar10" / "cifar-10-python.tar.gz"))
    mirror = Mirror(str(root))
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), SKYLAB_DATASET_MIRROR=mirror.url,
               SKYLAB_DATASETS_DIR=str(tmp_path / "none"), SKYLAB_DATASET_CACHE=str(cache))
    code = "from skylab import datasets; (x, y), (xt, yt) = datasets.cifar10(); print(x.shape, y[:5], xt.shape)"
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "is not the published c58f30108f718f92721af3b95e74349a" in r.stderr, r.stderr
        assert not cache.exists() or os.listdir(cache) == []
        env["SKYLAB_DATASET_VERIFY"] = "0"
        for expect in ("downloading", "using the cached copy"):
            r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 0, r.stderr
            assert expect in r.stdout and "(200, 32, 32, 3)" in r.stdout and "(40, 32, 32, 3)" in r.stdout
        assert mirror.count("/cifar10/") == 2
        assert os.listdir(cache) == ["cifar10"]
        assert sorted(os.listdir(cache / "cifar10" / "cifar-10-batches-py"))[:2] == ["batches.meta", "data_batch_1"]
    finally:
        mirror.stop()


# ---------------------------------------------------------------- resume across runtimes

def training_times(nb):
    """(seconds from the first cell's start to the training cell's, seconds the
    training cell took) of an executed CIFAR-10 notebook; None where the
    training cell did not finish."""
    parse = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    first = None
    for c in nb["cells"]:
        ex = c["metadata"].get("execution") if c["cell_type"] == "code" else None
        if not ex or "iopub.status.busy" not in ex:
            continue
        first = first or parse(ex["iopub.status.busy"])
        src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        if "for epoch in range(start_epoch, EPOCHS)" in src:
            if "iopub.status.idle" not in ex:
                return None
            start = parse(ex["iopub.status.busy"])
            return (start - first).total_seconds(), (parse(ex["iopub.status.idle"]) - start).total_seconds()
    return None


@needs_sandbox
def test_training_resumes_after_the_runtime_lifetime(course):
    import signal
    import torch
    # Three to six runs of the notebook: more than conftest's per-test limit.
    signal.alarm(max(signal.alarm(0), 400))
    user = "erin"
    epochs = 10
    put_in_drive(course, user, "ship.png", picture(os.path.join(course.tmp, "ship.png")))
    base = {"EPOCHS": epochs, "LIMIT_TRAIN": 192, "LIMIT_TEST": 40, "CHECKPOINT_EVERY": 0,
            "IMAGE_PATH": "/content/drive/ship.png"}

    # The data are in the user's cache already, so that every run below
    # spends the same time before training (no first download).
    cache = os.path.join(course.data_dir, "cache", user, "cache", "skylab", "datasets", "cifar10", "batches")
    os.makedirs(cache)
    for name, data in course_data.cifar10_batches().items():
        with open(os.path.join(cache, name), "wb") as f:
            f.write(data)

    # The uninterrupted reference run.
    r, ref = run_notebook(course, "cifar10_cnn", user, dict(base, OUTPUT_DIR="/content/drive/ref"))
    to_training, training = training_times(ref)

    # A runtime whose lifetime ends early in training (the kernel's start-up,
    # ~2 s, comes before the first cell). The runtime stops a few seconds after
    # its deadline (the monitor's tick, the hooks, the kernel's shutdown), so
    # the deadline aims at the first quarter of training. CHECKPOINT_EVERY=0:
    # only the expiry hook can have written a checkpoint. The machine is shared
    # and its speed varies: when training was over before the runtime stopped,
    # the next try aims earlier; when no epoch was done, later.
    frac = 0.25
    lifetime = 2 + to_training + training * frac
    ckpt_dir = drive(course, user, "resumed", "checkpoints")
    for attempt in range(4):
        shutil.rmtree(drive(course, user, "resumed"), ignore_errors=True)
        short = write(os.path.join(course.tmp, "short.toml"), '[runtimes]\nsandbox = "bwrap"\nmax_lifetime = "%ds"\n'
                      'warning = "1s"\ngrace = "60s"\nidle_timeout = "1h"\n' % max(3, round(lifetime)))
        r, cut = run_notebook(course, "cifar10_cnn", user, dict(base, OUTPUT_DIR="/content/drive/resumed"),
                              config=short, expect_ok=False)
        saved = sorted(os.listdir(ckpt_dir)) if os.path.isdir(ckpt_dir) else []
        print("attempt %d: lifetime %ds (reference: first cell to training %.1fs, training %.1fs): exit %d, "
              "saved %s" % (attempt + 1, max(3, round(lifetime)), to_training, training, r.returncode, saved))
        if r.returncode == 1 and saved and saved[0] != "epoch-%04d.pt" % (epochs - 1):
            break
        times = training_times(cut) if cut else None
        if times:  # training was over before the runtime stopped: aim earlier, with this run's timings
            frac /= 2
            lifetime = 2 + times[0] + times[1] * frac
        else:  # the runtime stopped before the first epoch was done: later
            frac += 0.15
            lifetime = 2 + to_training + training * frac
    assert r.returncode == 1, "the run should have been stopped by the runtime's lifetime: " + r.stderr[-2000:]
    assert "the runtime reached its maximum lifetime" in r.stderr, r.stderr[-2000:]
    assert len(saved) == 1 and re.fullmatch(r"epoch-\d{4}\.pt", saved[0]), (saved, stream_text(cut))
    saved_epoch = int(saved[0][6:10])  # 0-based index of the last finished epoch
    assert 0 <= saved_epoch < epochs - 1
    assert not os.path.exists(drive(course, user, "resumed", "cifar10_cnn.pt"))

    # A new runtime: training goes on with the next epoch, not from zero ...
    r, resumed = run_notebook(course, "cifar10_cnn", user, dict(base, OUTPUT_DIR="/content/drive/resumed"))
    text = all_text(resumed)
    assert "Resuming from /content/drive/resumed/checkpoints/%s" % saved[0] in text
    bars = stream_text(resumed, "stderr")
    assert "Epoch %d/%d" % (saved_epoch + 2, epochs) in bars
    assert "Epoch 1/%d" % epochs not in bars
    assert "training took" in text and "for epochs %d to %d" % (saved_epoch + 2, epochs) in text

    # ... and ends where the uninterrupted run ended: same weights, same loss.
    a = torch.load(drive(course, user, "ref", "cifar10_cnn.pt"))
    b = torch.load(drive(course, user, "resumed", "cifar10_cnn.pt"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k
    ref_text = all_text(ref)
    assert number(text, "Test loss:") == number(ref_text, "Test loss:")
    assert number(text, "Test accuracy:") == number(ref_text, "Test accuracy:")
    # The curves cover all epochs (the history came back with the checkpoint).
    ref_lines = re.findall(r"epoch \d+: loss [0-9.]+", stream_text(ref))
    assert len(ref_lines) == epochs
    assert re.findall(r"epoch \d+: loss [0-9.]+", stream_text(resumed)) == ref_lines[saved_epoch + 1:]


# ---------------------------------------------------------------- the examples gallery API

def test_examples_gallery_api(server):
    from test_accounts import add_user, new_token, token_session, uname
    a, b = uname("ex"), uname("ex")
    add_user(server, a, "password-of-a")
    add_user(server, b, "password-of-b")
    sa, sb = token_session(new_token(server, a)), token_session(new_token(server, b))

    r = sa.get(server.url("/api/skylab/examples"), timeout=30)
    assert r.status_code == 200, r.text
    listing = r.json()
    assert [e["name"] for e in listing] == ["cifar10_cnn", "mnist_dense", "house_prices_regression"]
    assert all(set(e) == {"name", "title", "description"} and e["title"] and e["description"] for e in listing)
    assert listing[0]["title"].startswith("CIFAR-10")
    assert requests.get(server.url("/api/skylab/examples"), timeout=30).status_code in (401, 403)

    # First open: a copy in the user's Drive.
    r = sa.post(server.url("/api/skylab/examples/cifar10_cnn"), timeout=30)
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["path"] == "Examples/cifar10_cnn.ipynb" and model["type"] == "notebook"
    got = sa.get(server.url("/api/contents/Examples/cifar10_cnn.ipynb"), timeout=30).json()
    shipped = json.load(open(EXAMPLES / "cifar10_cnn.ipynb"))
    assert [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in got["content"]["cells"]] \
        == [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in shipped["cells"]]

    # The user changes it; opening the example again gives their copy back, unchanged.
    nb = got["content"]
    nb["cells"][0]["source"] = "# my notes"
    r = sa.put(server.url("/api/contents/Examples/cifar10_cnn.ipynb"),
               json={"type": "notebook", "format": "json", "content": nb}, timeout=30)
    assert r.status_code == 200, r.text
    r = sa.post(server.url("/api/skylab/examples/cifar10_cnn"), timeout=30)
    assert r.status_code == 200 and r.json()["path"] == "Examples/cifar10_cnn.ipynb"
    again = sa.get(server.url("/api/contents/Examples/cifar10_cnn.ipynb"), timeout=30).json()
    assert again["content"]["cells"][0]["source"] == "# my notes"

    # Another user's copy is their own: A's changes are not B's, B's copy is new.
    assert sb.get(server.url("/api/contents/Examples/cifar10_cnn.ipynb"), timeout=30).status_code == 404
    r = sb.post(server.url("/api/skylab/examples/cifar10_cnn"), timeout=30)
    assert r.status_code == 201
    theirs = sb.get(server.url("/api/contents/Examples/cifar10_cnn.ipynb"), timeout=30).json()
    assert theirs["content"]["cells"][0]["source"] != "# my notes"

    # Bad names: 404, nothing written.
    for bad in ("nope", "run_code", "..%2Fetc", "cifar10_cnn.ipynb"):
        r = sa.post(server.url("/api/skylab/examples/" + bad), timeout=30)
        assert r.status_code == 404, (bad, r.status_code, r.text)
        assert "message" in r.json()
    names = [e["name"] for e in sa.get(server.url("/api/contents/Examples"), timeout=30).json()["content"]]
    assert names == ["cifar10_cnn.ipynb"]

"""Training that survives the end of a runtime.

A runtime lives at most its maximum lifetime (12 h by default). Checkpointer
keeps the state of a PyTorch training run -- model, optimizer, the epoch
reached, every random generator, the history of metrics -- and writes it to
the Drive every `every` epochs and once more when the runtime is about to be
stopped (it registers itself with skylab.runtime.on_expiry). Run the notebook
again in a new runtime: resume() loads the newest checkpoint and training
goes on from the next epoch, reaching the same result as an uninterrupted run
(same seed, same data order, same dropout masks).

    from skylab.train import Checkpointer
    ckpt = Checkpointer(model, optimizer, "/content/drive/checkpoints/cifar10", every=1)
    start = ckpt.resume()                 # 0 the first time, else the next epoch
    for epoch in range(start, EPOCHS):
        ...train one epoch...
        ckpt.epoch_done(epoch, loss=..., accuracy=...)

The expiry hook runs on a background thread while training goes on, so it
writes the state as it was at the end of the last finished epoch (a snapshot
taken by epoch_done), never a half-trained one.
"""
import copy
import glob
import os
import random
import re
import tempfile
import threading

import torch

from skylab import runtime

__all__ = ["Checkpointer", "rng_state", "set_rng_state", "seed_everything", "architecture",
           "model_from_architecture", "save_model", "load_model"]

_FILE_RE = re.compile(r"^epoch-(\d+)\.pt$")


def seed_everything(seed):
    """Seeds Python, NumPy and PyTorch (CPU and every GPU)."""
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state():
    """The state of every random generator a training loop draws from."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np
        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_cpu(obj):
    """A deep copy with every tensor on the CPU (a snapshot that later steps
    cannot change, loadable on a machine without the GPU)."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


class Checkpointer:
    """Saves and restores a training run in the folder `path` (on the Drive).

    model, optimizer: what to save (state_dict()/load_state_dict()); scheduler
    optional. every: write a file every N finished epochs (0: only at expiry).
    keep: how many checkpoint files to keep (the newest). on_expiry: register
    the expiry hook (default True). Thread-safe for one training loop plus
    the expiry hook.
    """

    def __init__(self, model, optimizer, path, every=1, keep=2, scheduler=None, on_expiry=True):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.path = str(path)
        self.every = int(every)
        self.keep = max(1, int(keep))
        self.history = {}
        self.expired = threading.Event()  #: set once the runtime's expiry hook ran
        self._lock = threading.Lock()
        self._snapshot = None   # the state at the end of the last finished epoch
        self._written = -1      # epoch of the newest file written
        os.makedirs(self.path, exist_ok=True)
        if on_expiry:
            runtime.on_expiry(self._on_expiry)

    # ------------------------------------------------------------ resuming
    def files(self):
        """Checkpoint files, oldest first."""
        found = []
        for p in glob.glob(os.path.join(self.path, "epoch-*.pt")):
            m = _FILE_RE.match(os.path.basename(p))
            if m:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def resume(self, map_location=None):
        """Loads the newest readable checkpoint into the model, optimizer,
        random generators and history. Returns the epoch to start from: 0
        when there is none, else the one after the saved epoch."""
        for p in reversed(self.files()):
            try:
                state = torch.load(p, map_location=map_location or "cpu")
            except Exception as e:  # a damaged file: fall back to the one before
                print(f"skylab.train: cannot read {p} ({e}); trying an older checkpoint", flush=True)
                continue
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            self.history = state.get("history", {})
            epoch = int(state["epoch"])
            with self._lock:
                self._snapshot = state
                self._written = epoch
            print(f"Resuming from {p}: epoch {epoch + 1} was finished, going on with epoch {epoch + 2}",
                  flush=True)
            return epoch + 1
        return 0

    # ------------------------------------------------------------ saving
    def epoch_done(self, epoch, **metrics):
        """Records the end of epoch `epoch` (0-based) and its metrics (added to
        `history`); writes a checkpoint when `every` says so."""
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(float(v))
        state = {
            "epoch": int(epoch),
            "model": _to_cpu(self.model.state_dict()),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scheduler": _to_cpu(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "rng": rng_state(),
            "history": copy.deepcopy(self.history),
        }
        with self._lock:
            self._snapshot = state
        if self.every > 0 and (epoch + 1) % self.every == 0:
            self.save()

    def save(self):
        """Writes the last snapshot (atomically: temporary file, fsync, rename)
        and removes files beyond `keep`. Returns the path, or None."""
        with self._lock:
            state = self._snapshot
            if state is None or state["epoch"] <= self._written:
                return None
            target = os.path.join(self.path, "epoch-%04d.pt" % state["epoch"])
            _atomic_write(target, lambda f: torch.save(state, f))
            self._written = state["epoch"]
            for old in self.files()[:-self.keep]:
                try:
                    os.unlink(old)
                except OSError:
                    pass
            return target

    def _on_expiry(self):
        path = self.save()
        self.expired.set()
        with self._lock:
            epoch = self._snapshot["epoch"] if self._snapshot else None
        if epoch is None:
            print("skylab.train: the runtime is ending before the first epoch finished; nothing to save",
                  flush=True)
        else:
            print(f"skylab.train: the runtime is ending; epoch {epoch + 1} is saved in "
                  f"{path or self.files()[-1]}. Run the notebook again to continue.", flush=True)


# ---------------------------------------------------------------- saving models

def _layer_config(module):
    """Constructor arguments of a torch.nn layer, read back from its attributes
    (what Keras' get_config() gives): only JSON values."""
    import inspect
    import json
    cfg = {}
    try:
        params = inspect.signature(type(module).__init__).parameters
    except (TypeError, ValueError):
        return cfg
    for name in params:
        if name in ("self", "device", "dtype", "args", "kwargs"):
            continue
        if name == "bias":
            value = getattr(module, "bias", None) is not None
        elif hasattr(module, name):
            value = getattr(module, name)
        else:
            continue
        if isinstance(value, tuple):
            value = list(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        cfg[name] = value
    return cfg


def architecture(model, name=None):
    """A JSON-able description of an nn.Sequential, like Keras' model.to_json():
    {"class_name": "Sequential", "config": {"name", "layers": [{"class_name",
    "config"}]}, "backend": "pytorch", ...}."""
    if not isinstance(model, torch.nn.Sequential):
        raise TypeError("architecture() describes torch.nn.Sequential models")
    layers = [{"class_name": type(m).__name__, "module": type(m).__module__, "config": _layer_config(m)}
              for m in model]
    return {"class_name": "Sequential", "config": {"name": name or "sequential", "layers": layers},
            "backend": "pytorch", "torch_version": torch.__version__.split("+")[0]}


def model_from_architecture(desc):
    """Builds the nn.Sequential that architecture() described (fresh weights)."""
    import importlib
    if desc.get("class_name") != "Sequential":
        raise ValueError("not a Sequential model description")
    layers = []
    for layer in desc["config"]["layers"]:
        module = importlib.import_module(layer.get("module", "torch.nn"))
        if not (module.__name__ == "torch.nn" or module.__name__.startswith("torch.nn.")):
            raise ValueError("only torch.nn layers can be rebuilt: %r" % layer.get("module"))
        cls = getattr(module, layer["class_name"])
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in layer["config"].items()}
        layers.append(cls(**cfg))
    return torch.nn.Sequential(*layers)


def _atomic_write(path, write):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_model(model, directory, name, extra=None):
    """Saves `model` as DIRECTORY/NAME.json (architecture, plus `extra`, e.g.
    class names or normalisation) and DIRECTORY/NAME.pt (the weights, a
    state_dict). Returns the two paths."""
    import json
    os.makedirs(directory, exist_ok=True)
    desc = architecture(model, name)
    if extra:
        desc["extra"] = extra
    json_path = os.path.join(directory, name + ".json")
    weights_path = os.path.join(directory, name + ".pt")
    _atomic_write(json_path, lambda f: f.write(json.dumps(desc, indent=1).encode()))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(weights_path, lambda f: torch.save(state, f))
    return json_path, weights_path


def load_model(directory, name, map_location="cpu"):
    """The model save_model() wrote, rebuilt and with its weights; returns
    (model, extra)."""
    import json
    with open(os.path.join(directory, name + ".json")) as f:
        desc = json.load(f)
    model = model_from_architecture(desc)
    model.load_state_dict(torch.load(os.path.join(directory, name + ".pt"), map_location=map_location))
    return model, desc.get("extra", {})

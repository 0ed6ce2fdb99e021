#!/usr/bin/env python3
"""GPU after fork (issue 17): the runtime template's CUDA handling, without a server.

The template imports torch with no GPU visible and must never initialise
CUDA (a CUDA context does not survive fork); a GPU runtime's kernel,
forked from it, gets its runtime's CUDA_VISIBLE_DEVICES and initialises
CUDA itself. This script checks exactly that, with the template's own code
(python/skylab/template.py: preload, fork_safety_problems, _fresh_process),
and times the course's CNN (examples/cifar10_cnn.ipynb's model and
optimizer, CIFAR-10-shaped random data, batch 32) side by side:

  bare      a fresh Python: imports torch with the GPU visible, trains;
  forked    a child forked from a template-like parent (torch imported with
            CUDA_VISIBLE_DEVICES=""), given the GPU back, trains the same.

It reports s/epoch for each, whether the weights after training are the
same (same seed, deterministic cuDNN), that the parent never initialised
CUDA, and that the child sees only the devices it was given. It needs a
Python whose torch has CUDA (on a lent GPU machine: its `python3`), and no
ipykernel: it is the one part of the GPU checks that runs where Skylab's
runtime stack (Debian's Python 3.11, ipykernel, bubblewrap) is not
installed. Debian 12's own python3-torch has no CUDA.

    python3 bench/gpu_fork_check.py                      # 10,000 images, 2 epochs
    python3 bench/gpu_fork_check.py --images 50000 --epochs 3 --json out.json

Exit status: 0 all checks held, 1 a check failed, 2 no CUDA here.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))


def train(images, epochs, seed=0, device="cuda"):
    """The course's model on random CIFAR-10-shaped data: s/epoch and a digest of the weights."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    cuda = device == "cuda"
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (images, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (images,), generator=g)
    model = nn.Sequential(
        nn.Conv2d(3, 32, kernel_size=3, padding="same"), nn.ReLU(),
        nn.Conv2d(32, 32, kernel_size=3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, kernel_size=3, padding="same"), nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    ).to(device)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1e-7)
    per_epoch = []
    for _ in range(epochs):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(images, generator=g)
        for i in range(0, images, 32):
            idx = order[i:i + 32]
            xb = (x[idx].to(device, non_blocking=True).float() / 255.0)
            yb = y[idx].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
        per_epoch.append(time.perf_counter() - t0)
    digest = hashlib.sha256()
    for p in model.state_dict().values():
        digest.update(p.detach().cpu().numpy().tobytes())
    return {"s_per_epoch": per_epoch, "weights": digest.hexdigest()[:16],
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "device_count": torch.cuda.device_count() if cuda else 1}


def bare(args):
    """A fresh interpreter (today's path: Python started in the runtime)."""
    code = ("import json, sys; sys.path.insert(0, %r); import gpu_fork_check as g; "
            "print(json.dumps(g.train(%d, %d, device=%r)))" % (HERE, args.images, args.epochs, args.device))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3000)
    if out.returncode != 0:
        raise RuntimeError("bare run failed:\n" + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def forked(args, visible):
    """The template's way: torch imported with no GPU visible, fork, GPU given back."""
    from skylab import template
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    not_loaded = template.preload(["numpy", "torch"])  # ipykernel missing here is fine
    problems = template.fork_safety_problems()
    import torch
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
            template._fresh_process()
            res = {"available": args.device == "cpu" or torch.cuda.is_available()}
            if res["available"]:
                res.update(train(args.images, args.epochs, device=args.device))
        except BaseException as e:  # noqa: BLE001
            res = {"error": "%s: %s" % (e.__class__.__name__, e)}
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        res = json.loads(f.read() or '{"error": "the child said nothing"}')
    os.waitpid(pid, 0)
    res["template_problems"] = problems
    res["template_not_preloaded"] = not_loaded
    res["template_initialised_cuda"] = torch.cuda.is_initialized()
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: a dry run of this script's own steps where there is no GPU")
    args = ap.parse_args()
    # Asked in a child: this process, the "template", must not touch CUDA
    # (even torch.cuda.is_available() initialises the driver) before the fork.
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__, "
                            "torch.cuda.is_available())"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        print("no torch in %s" % sys.executable)
        return 2
    version, available = probe.stdout.split()[-2:]
    if available != "True" and args.device == "cuda":
        print("no CUDA here (torch %s)" % version)
        return 2
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0") or "0"
    visible = visible.split(",")[0]  # one GPU, as a runtime of gpus = 1 gets
    res = {"torch": version, "python": sys.version.split()[0]}
    res["forked"] = forked(args, visible)
    res["bare"] = bare(args)
    f, b = res["forked"], res["bare"]
    checks = {
        "the template did not initialise CUDA": not f.get("template_initialised_cuda", True),
        "the template is fork-safe (no threads, no CUDA)": not f.get("template_problems"),
        "the forked kernel sees a GPU": bool(f.get("available")),
        "the forked kernel sees only the GPU it was given": f.get("device_count") == 1,
        "same seed, same weights (forked vs bare)": f.get("weights") == b.get("weights"),
    }
    res["checks"] = checks
    if "s_per_epoch" in f:
        fs, bs = min(f["s_per_epoch"]), min(b["s_per_epoch"])
        res["ratio_forked_to_bare"] = fs / bs
        print("%s, torch %s: s/epoch (best of %d) forked %.3f, bare %.3f, ratio %.3f" % (
            b.get("device"), version, args.epochs, fs, bs, fs / bs))
    for what, ok in checks.items():
        print("%-52s %s" % (what, "ok" if ok else "FAILED"))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(res, out, indent=1)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

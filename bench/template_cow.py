#!/usr/bin/python3
"""Where a forked kernel's private memory comes from (issue 17, PSS).

Prepares an interpreter as the runtime template does (imports ipykernel and
the preload list, the kernel's command line and IPython shell prepared,
gc.freeze(), fill_allocator_holes(), compact_module_names()), forks, and in
the child does what a forked kernel does first (import caches, seeds) and
runs ipykernel's IPKernelApp.initialize() with each init step measured by the
private dirty memory it adds (/proc/self/smaps_rollup): pages of the
template the child copies on write (reference counts, caches) and its own
new allocations. Then starts the kernel and reports what an idle second adds.
No server, no sandbox: the same Python work a forked kernel does.

    /usr/bin/python3 bench/template_cow.py
    /usr/bin/python3 bench/template_cow.py --preload numpy,pandas --warm-parse
    /usr/bin/python3 bench/template_cow.py --no-prepare    # each kernel parses, builds its shell

--warm-parse runs traitlets' command-line parsing once in the parent before
the fork (its class-level caches then exist in the shared pages), to measure
what such a warm-up would save.
"""

import argparse
import functools
import gc
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))


def private_dirty_kib():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return 0


def child(out, path, template):
    def say(text):
        os.write(out, (text + "\n").encode())

    base = private_dirty_kib()
    from ipykernel.kernelapp import IPKernelApp
    steps = [n for n in dir(IPKernelApp)
             if n.startswith("init_") or n in ("parse_command_line", "load_config_file")]
    depth = [0]

    def measured(name, fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            depth[0] += 1
            before = private_dirty_kib()
            try:
                return fn(*a, **kw)
            finally:
                depth[0] -= 1
                say("%s%-26s %7d KiB" % ("  " * depth[0], name, private_dirty_kib() - before))
        return run

    for n in steps:
        setattr(IPKernelApp, n, measured(n, getattr(IPKernelApp, n)))
    say("%-28s %7d KiB" % ("fork + import", private_dirty_kib() - base))
    before = private_dirty_kib()
    template._fresh_process()  # what a forked kernel does first: import caches, seeds
    say("%-28s %7d KiB" % ("fresh process", private_dirty_kib() - before))
    sys.argv[:] = ["ipykernel_launcher", "-f", path]
    app = template._kernel_app()  # with what the template prepared (if it did)
    before = private_dirty_kib()
    app.initialize()
    say("%-28s %7d KiB" % ("initialize(), all", private_dirty_kib() - before))
    app.kernel.start()
    before = private_dirty_kib()
    time.sleep(1)
    say("%-28s %7d KiB" % ("kernel started, 1 s idle", private_dirty_kib() - before))
    say("%-28s %7d KiB" % ("since the fork", private_dirty_kib() - base))
    os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preload", default="numpy,pandas,matplotlib.pyplot,torch")
    ap.add_argument("--warm-parse", action="store_true")
    ap.add_argument("--no-compact", action="store_true",
                    help="leave sys.modules' names where the imports put them")
    ap.add_argument("--no-prepare", action="store_true",
                    help="no command line parsed and no shell built before the fork")
    args = ap.parse_args()
    from skylab import template
    failed = template.preload([n for n in args.preload.split(",") if n])
    if failed:
        print("not preloaded:", ", ".join(failed))
    workdir = tempfile.mkdtemp(prefix="skylab-cow-")
    path = os.path.join(workdir, "kernel.json")
    if args.warm_parse:
        from ipykernel.kernelapp import IPKernelApp
        IPKernelApp.instance().parse_command_line(["-f", path])
        IPKernelApp.clear_instance()
    if not args.no_prepare:
        print("prepared:", ", ".join(template.prepare_kernel_start(os.path.join(workdir, "ipython"))))
    gc.collect()
    gc.freeze()
    template.fill_allocator_holes()
    if not args.no_compact:
        template.compact_module_names()
    template._FORGET_FINDERS[:] = template._import_caches_to_forget()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        child(w, path, template)
    os.close(w)
    with os.fdopen(r) as f:
        sys.stdout.write(f.read())
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()

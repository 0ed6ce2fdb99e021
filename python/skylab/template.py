"""The runtime template: a pre-imported kernel interpreter, forked into each sandbox.

Run by `skylab serve` as root, outside every sandbox, with a clean environment
(no secrets, no user data):

    /usr/bin/python3 PYTHON_DIR/skylab/template.py --socket PATH --preload numpy,pandas,...

It imports ipykernel and the preload list once, then listens on a root-only
unix socket (0600 in a 0700 directory; peers must be uid 0: SO_PEERCRED). The
only client is the runtime's root supervisor (`skylab sandbox-exec
--template`, outside the sandbox), which has already built the sandbox with
bubblewrap and found its init by the trustworthy checks of `skylab
sandbox-enter`. One request per connection: a JSON object and, by SCM_RIGHTS,
the fds [stdin, stdout, stderr, ipc, uts, net, cgroup, pid, mnt ns, root,
(seccomp BPF)].

For each request the template forks C (root). C joins the runtime's cgroups,
setns()es into its namespaces and root, and forks K, the kernel, which is in
the sandbox's pid namespace. K drops to the user's uid/gid (no groups),
sets no_new_privs and the seccomp filter, makes itself dumpable (as execve
would), keeps only fds 0-2, takes exactly the runtime's environment, checks
as the user that the sandbox would run this same interpreter (else it asks
for today's path), reseeds, and runs ipykernel's app in-process. C answers
the supervisor {"ok": true, "pid": K} with a pidfd of K, or {"ok": false,
"error": ...} (the supervisor then falls back to starting Python in the
sandbox), and exits. The template is a child subreaper: K is reparented to
it and reaped here; no child's death affects it.

The template never initialises CUDA and runs no thread: both are checked
after the imports, and it refuses to serve otherwise.
"""

import ctypes
import ctypes.util
import gc
import json
import os
import signal
import socket
import struct
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SETGID = 6
CAP_SETUID = 7
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
NS_ORDER = ("ipc", "uts", "net", "cgroup", "pid", "mnt")
MAX_REQUEST = 1 << 20
PRELOAD_NICE = 10
MAX_FDS = 16
# (IPython.core.completerlib and faulthandler: what IPKernelApp.initialize()
# would otherwise import in each kernel, in its own memory.)
ALWAYS = ["ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "IPython",
          "zmq", "matplotlib_inline.backend_inline", "jupyter_client.session",
          "IPython.core.completerlib", "faulthandler"]
# The interpreter path K checks the sandbox would run (bubblewrap's path execs `python3`).
PYTHON_NAMES = ("python3", "/usr/bin/python3")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_PAGEOUT = 21


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _prctl(op, a=0, b=0, c=0, d=0):
    if _libc.prctl(op, a, b, c, d) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "prctl(%d): %s" % (op, os.strerror(e)))


def _setns(fd):
    if _libc.setns(fd, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


def _log(msg):
    sys.stderr.write("skylab template: %s\n" % msg)
    sys.stderr.flush()


# ------------------------------------------------------------------ preload

def preload(names):
    """Imports ipykernel's stack and `names`; returns the names that failed."""
    failed = []
    for name in ALWAYS + list(names):
        try:
            __import__(name)
            if name == "matplotlib":
                __import__("matplotlib.pyplot")
        except Exception as e:  # a missing optional package is not fatal
            failed.append("%s (%s)" % (name, e.__class__.__name__))
    return failed


def _allocator_holes():
    """{size class: free blocks in its partly used pools}, from sys._debugmallocstats()."""
    fd = os.memfd_create("mallocstats")
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        sys._debugmallocstats()
        _libc.fflush(None)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = os.pread(fd, 1 << 20, 0).decode(errors="replace")
    os.close(fd)
    # (One regular expression over the text: parsing line by line would
    # itself leave thousands of freed blocks behind.)
    import re
    table = text.split("\n\n", 2)[1] if text.count("\n\n") >= 2 else text
    return {int(c): int(n) for c, n in
            re.findall(r"^ *(\d+) +\d+ +\d+ +\d+ +(\d+)$", table, re.M)}


_FILLER = []


def fill_allocator_holes():
    """Takes every free block of the object allocator's partly used pools.

    A forked kernel's first objects would otherwise go into those holes,
    scattered over thousands of pages it shares with the template, and each
    such object copies its whole page; with the holes taken its objects fill
    new pools of its own, densely. Costs the template the holes' bytes
    (a few hundred KiB). Returns how many blocks were taken."""
    taken = 0
    for _ in range(3):  # what the first pass and the count itself freed
        holes = _allocator_holes()
        at = len(_FILLER)
        _FILLER.extend([None] * sum(holes.values()))  # room first: no list growth below
        for cls, free in holes.items():
            size = (cls + 1) * 16
            for _ in range(free):
                if size == 16:
                    obj = object()
                elif size == 32:
                    obj = float(taken)
                else:
                    obj = bytes(size - 33)  # a bytes object of n bytes takes 33 + n
                _FILLER[at] = obj
                at += 1
                taken += 1
    return taken


def compact_module_names():
    """Re-keys sys.modules with fresh copies of the module names, side by side.

    The names were allocated one at a time during the imports, each next to
    that module's other objects, so over a thousand pages. A kernel that
    walks sys.modules (IPython keeps `set(sys.modules)` at start) writes
    the reference count of every name and so copies each of those pages
    (~4 MiB per kernel); the copies made here, after the allocator's holes
    are filled, sit together in a few dozen pages. Same names, same
    modules, same order; only the key objects change. Returns how many."""
    items = list(sys.modules.items())
    fresh = [("".join((name, "")), module) for name, module in items]
    for name, _ in fresh:
        hash(name)  # cached in the string now, not written in each kernel
    sys.modules.clear()
    sys.modules.update(fresh)
    return len(fresh)


def _file_mappings():
    """[(start, end, Rss KiB, Private_Clean KiB)] of the file mappings that hold
    only the file's own pages (no page copied on write into anonymous memory)."""
    out, cur = [], None
    with open("/proc/self/smaps") as f:
        for line in f:
            head, _, rest = line.partition(" ")
            if not head.endswith(":"):  # a mapping's first line
                fields = rest.split()
                cur = None
                if len(fields) >= 5 and fields[4].startswith("/"):
                    a, b = head.split("-")
                    cur = [int(a, 16), int(b, 16), 0, 0, 0]
                    out.append(cur)
            elif cur is not None and head in ("Rss:", "Private_Clean:", "Anonymous:"):
                cur[("Rss:", "Private_Clean:", "Anonymous:").index(head) + 2] = int(rest.split()[0])
    return [(a, b, rss, pc) for a, b, rss, pc, anon in out if not anon]


def page_out_start_only_pages():
    """Gives the page cache back the library pages that only the imports used.

    Importing torch runs the static initialisers of its ~280 libraries, which
    read ~100 MiB of their code and data once; the template then keeps those
    pages mapped, and no kernel maps them. MADV_PAGEOUT reclaims the file
    pages that this process alone maps (others' are left alone, and so is
    every anonymous page: a mapping with pages copied on write is skipped),
    so they leave the page cache, not just this process's page tables. A
    kernel that needs one later reads it back, as a fresh process would.
    Returns (MiB mapped by the template alone before, after)."""
    maps = _file_mappings()
    before = sum(pc for _, _, _, pc in maps)
    for a, b, rss, _ in maps:
        if rss:
            _libc.madvise(a, b - a, MADV_PAGEOUT)  # EINVAL before Linux 5.4: nothing reclaimed
    after = sum(pc for _, _, _, pc in _file_mappings())
    return before / 1024, after / 1024


def fork_safety_problems():
    """What makes this process unsafe to fork: threads, an initialised CUDA."""
    problems = []
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError:
        tasks = 1
    import threading
    if threading.active_count() != 1 or tasks != 1:
        problems.append("%d threads" % tasks)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        problems.append("CUDA is initialised")
    return problems


# ------------------------------------------------------------------ the kernel's start, done once
#
# Two parts of ipykernel's start are the same in every kernel. Done in each
# forked kernel, they cost it ~5 MiB of template pages copied on write
# (reference counts, bytecode warm-up over traitlets' and IPython's objects)
# and ~20 ms; so the template does them once:
# - The command line. A forked kernel's is always `-f <connection file>`
#   (_valid): traitlets would build an argparse parser over every
#   configurable class to read it. The template parses it once, with a
#   placeholder path; a kernel takes that result with its own path.
# - The IPython shell (ZMQInteractiveShell), built with history off, no
#   user and the template's own IPython folder. A kernel adopts it and redoes
#   what belongs to its user and process (_adopt_shell). A kernel whose
#   configuration says anything (IPython config files of the user or the
#   system, a virtualenv) builds its own shell, as without the template.

_CONNECTION_PLACEHOLDER = "/skylab-template-placeholder/kernel.json"
_PARSED = []  # [the traitlets Config that `-f _CONNECTION_PLACEHOLDER` gives]
_SHELL = []  # [the template's shell]


def prepare_kernel_start(ipython_dir):
    """Parses a kernel's command line and builds its shell, once; returns
    what it prepared (a kernel falls back to doing the rest itself)."""
    import atexit
    import copy
    from ipykernel.kernelapp import IPKernelApp
    done = []
    app = IPKernelApp()
    app.parse_command_line(["-f", _CONNECTION_PLACEHOLDER])
    if app.cli_config == {"IPKernelApp": {"connection_file": _CONNECTION_PLACEHOLDER}} \
            and not app.extra_args:
        _PARSED[:] = [copy.deepcopy(app.cli_config)]
        done.append("command line")
    del app
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.zmqshell import ZMQInteractiveShell
    from traitlets.config import Config
    env = dict(os.environ)
    main = sys.modules.get("__main__")
    os.environ["IPYTHONDIR"] = ipython_dir
    config = Config()
    config.HistoryManager.enabled = False  # no database, no thread in the template
    try:
        shell = ZMQInteractiveShell.instance(config=config, compiler_class=XCachingCompiler)
    finally:
        # What the shell did to this process (each kernel redoes it as its own).
        os.environ.clear()
        os.environ.update(env)
        if main is not None:
            sys.modules["__main__"] = main
    atexit.unregister(shell.atexit_operations)
    _SHELL[:] = [shell]
    done.append("IPython shell")
    return done


def _shell_not_for(app):
    """Why this kernel must build its own shell (None: it may adopt the template's)."""
    if getattr(app, "loaded_config_files", None):
        return "IPython config files: " + ", ".join(app.loaded_config_files)
    for section, values in app.config.items():
        if values and (section != "IPKernelApp" or set(values) != {"connection_file"}):
            return "configuration of %s" % section
    if os.environ.get("VIRTUAL_ENV"):
        return "a virtualenv"
    return None


def _adopt_shell(kernel):
    """The template's shell, made this kernel's: what InteractiveShell.__init__
    took from the process and the user (IPython folder, profile, history,
    pickleshare db, logger, environment, encoding, __main__, exit hook)."""
    import atexit
    from IPython.paths import get_home_dir
    shell = kernel.shell
    shell.parent = kernel
    shell.config = kernel.config  # (the template's turned history off)
    shell.kernel = kernel
    shell.init_ipython_dir(None)
    shell.init_profile_dir(kernel.profile_dir)
    shell.home_dir = get_home_dir()
    shell.starting_dir = os.getcwd()
    shell.init_environment()
    shell.init_encoding()
    shell.save_sys_module_state()
    shell.init_sys_modules()
    shell.db = type(shell.db)(os.path.join(shell.profile_dir.location, "db"))  # pickleshare
    shell.configurables.remove(shell.history_manager)
    shell.init_history()
    shell.init_user_ns()
    shell.init_logger()
    atexit.register(shell.atexit_operations)


def _parse_as_the_template_did(app, argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "-f":
        return type(app).parse_command_line(app, argv)
    import copy
    config = copy.deepcopy(_PARSED[0])
    config.IPKernelApp.connection_file = argv[1]
    app.argv = list(argv)
    app.cli_config = config
    app.update_config(config)
    app.extra_args = []
    return None


def _init_kernel_with_the_templates_shell(app, init_kernel):
    from ipykernel.zmqshell import ZMQInteractiveShell
    why = _shell_not_for(app)
    if why:
        ZMQInteractiveShell.clear_instance()
        _trace("kernel app: builds its own shell (%s)" % why)
        return init_kernel()
    init_kernel()
    if app.kernel.shell is not _SHELL[0]:
        raise RuntimeError("the kernel did not take the template's shell")
    _adopt_shell(app.kernel)
    _trace("kernel app: took the template's shell")
    return None


def _kernel_app():
    """IPKernelApp.instance(), to start with what the template prepared."""
    import functools
    from ipykernel import kernelapp
    app = kernelapp.IPKernelApp.instance()
    if _PARSED:
        app.parse_command_line = functools.partial(_parse_as_the_template_did, app)
    if _SHELL:
        app.init_kernel = functools.partial(_init_kernel_with_the_templates_shell, app,
                                            app.init_kernel)
    return app


# ------------------------------------------------------------------ the kernel (K)

def _kernel_sys_path(env, cwd):
    """sys.path as `python3 -m ipykernel_launcher` in the sandbox would have it."""
    import site
    base = [p for p in _BASE_PATH if "-packages" not in p]
    sites = [p for p in _BASE_PATH if "-packages" in p]
    pp = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    sys.path[:] = [cwd] + pp + base
    site.USER_BASE = None
    site.USER_SITE = None
    site.ENABLE_USER_SITE = True
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site):
        site.addsitedir(user_site)
    sys.path.extend(p for p in sites if p not in sys.path)
    return user_site


def _user_shadows_preload(user_site):
    """A preloaded package the user installed their own copy of (pip install --user)."""
    try:
        names = os.listdir(user_site)
    except OSError:
        return None
    loaded = {n for n in sys.modules if "." not in n}
    for entry in names:
        name = entry[:-3] if entry.endswith(".py") else entry.split(".")[0]
        if name in loaded:
            return name
    return None


def _user_matplotlibrc():
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return False
    for f in ("get_configdir", "get_cachedir"):
        clear = getattr(getattr(mpl, f, None), "cache_clear", None)
        if clear:
            clear()  # the template's answers (its own MPLCONFIGDIR) are not the kernel's
    cands = [os.path.join(os.environ.get("MPLCONFIGDIR", ""), "matplotlibrc"),
             os.path.join(os.environ.get("HOME", "/"), ".config", "matplotlib", "matplotlibrc"),
             os.path.join(os.getcwd(), "matplotlibrc")]
    if os.environ.get("MATPLOTLIBRC"):
        cands.append(os.environ["MATPLOTLIBRC"])
    return any(os.path.exists(c) for c in cands)


def _forget_gpu_answers():
    """What torch cached about GPUs in the template (none visible there)."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    for name in ("device_count", "_device_count_nvml", "_raw_device_count_nvml",
                 "_device_count_amdsmi"):
        clear = getattr(getattr(cuda, name, None), "cache_clear", None)
        if clear:
            clear()


def _reseed():
    import random
    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()  # a fresh process seeds the global RandomState from the OS
    torch = sys.modules.get("torch")
    if torch is not None:
        # As a fresh process: a non-deterministic seed of the CPU generator (each
        # kernel its own). CUDA's generators are made, and seeded from the OS,
        # when the kernel first uses CUDA (never in the template); torch.seed()
        # would queue that seed for them too, and cost 0.5 MiB of copied pages.
        torch.default_generator.seed()


def _show_as(argv, env):
    """/proc/self/cmdline and /proc/self/environ as exec'ing `argv` with `env`
    would show them, not the template's (host paths): both are rewritten in
    place, in the regions the template was started with (the server pads
    them, SKYLAB_TEMPLATE_PAD); NULs fill the rest. False when they do not fit."""
    with open("/proc/self/stat") as f:
        st = f.read()
    rest = st[st.rindex(")") + 2:].split()
    arg_start, arg_end, env_start, env_end = (int(x) for x in rest[45:49])
    args = b"".join(a.encode() + b"\0" for a in argv)
    envs = b"".join(("%s=%s" % kv).encode() + b"\0" for kv in env.items())
    if len(args) > arg_end - arg_start or len(envs) > env_end - env_start:
        return False
    ctypes.memmove(arg_start, args.ljust(arg_end - arg_start, b"\0"), arg_end - arg_start)
    ctypes.memmove(env_start, envs.ljust(env_end - env_start, b"\0"), env_end - env_start)
    return True


def _threads():
    try:
        return os.listdir("/proc/self/task")
    except OSError:
        return []


def _status_fields(tid):
    try:
        with open("/proc/self/task/%s/status" % tid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return None  # the thread ended


def _filter(bpf):
    """no_new_privs and the seccomp filter, for this thread and those it starts later."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if bpf:
        if len(_threads()) > 1:
            raise OSError("the filter must be set before any thread starts")
        buf = ctypes.create_string_buffer(bpf, len(bpf))
        prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
        _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def _keep_only_setid_caps():
    """A pre-started kernel stays uid 0 until its claim, but with no
    capability other than changing its uid and gid (all others leave the
    bounding, permitted, effective, inheritable and ambient sets)."""
    keep = (1 << CAP_SETGID) | (1 << CAP_SETUID)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(last + 1):
        if not keep & (1 << cap):
            _prctl(PR_CAPBSET_DROP, cap)
    hdr = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)  # effective, permitted, inheritable x2
    if _libc.capset(hdr, data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "capset: %s" % os.strerror(e))


def _drop(uid, gid, bpf, filtered=False):
    """Drops to uid:gid (no groups) and sets no_new_privs and the seccomp
    filter (`filtered`: both were set before any thread started, and every
    thread has them); checks that every thread of this process did."""
    if uid <= 0 or gid <= 0:
        raise ValueError("refusing uid/gid 0")
    os.setgroups([])
    os.setresgid(gid, gid, gid)  # glibc applies set*id to every thread
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0 or os.getgid() == 0:
        os._exit(125)
    if not filtered:
        _filter(bpf)
    want = str(uid)
    for tid in _threads():
        f = _status_fields(tid)
        if f is None:
            continue
        ids = f.get("Uid", "").split() + f.get("Gid", "").split()
        if (ids[:3] != [want] * 3 or ids[4:7] != [str(gid)] * 3 or
                int(f.get("CapEff", "1"), 16) or int(f.get("CapPrm", "1"), 16) or
                f.get("NoNewPrivs") != "1" or ((bpf or filtered) and f.get("Seccomp") != "2")):
            os._exit(125)  # a thread kept root, capabilities or no filter: never run user code
    _prctl(PR_SET_DUMPABLE, 1)  # as after execve: the user may inspect their own process


def _become(req, env):
    """Takes the runtime's environment, working directory and sys.path, and
    says why today's path must run instead (None: this interpreter may)."""
    cwd = "/content"
    try:
        os.chdir(cwd)
    except OSError:
        cwd = "/"
        os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.environ.setdefault("PWD", cwd)  # as bubblewrap's --chdir sets it
    for k, v in _IMPORT_ENV.items():
        os.environ.setdefault(k, v)
    user_site = _kernel_sys_path(env, cwd)
    # The sandbox would exec `python3` from PATH: when that is not this
    # interpreter (a venv, ~/.local/bin), or the user installed their own
    # copy of a preloaded package, today's path runs instead.
    import shutil
    which = shutil.which(req["argv"][0], path=env.get("PATH"))
    if not which or os.path.realpath(which) != os.path.realpath(sys.executable):
        return "python3 in the sandbox is %s" % which
    shadow = _user_shadows_preload(user_site)
    if shadow:
        return "user site shadows %s" % shadow
    if _user_matplotlibrc():
        return "the user has a matplotlibrc (read when matplotlib is imported)"
    return None


def _import_caches_to_forget():
    """The import system's folder caches a kernel must not trust: all but
    those of folders under /usr, which are the same folders in the sandbox
    (read-only binds of the host's) and whose finders check the folder's
    mtime at every lookup. Listed in the template: walking all ~270 finders
    in each kernel would copy ~2.5 MiB of template pages (reference counts)."""
    return [name for name, finder in sys.path_importer_cache.items()
            if finder is None or not name.startswith("/usr/")]


def _forget_import_caches():
    """importlib.invalidate_caches(), for the folders _FORGET_FINDERS names."""
    import importlib._bootstrap_external as bootstrap
    for name in _FORGET_FINDERS:
        finder = sys.path_importer_cache.get(name)
        if finder is None or not os.path.isabs(name):
            sys.path_importer_cache.pop(name, None)
        elif hasattr(finder, "invalidate_caches"):
            finder.invalidate_caches()
    bootstrap._NamespacePath._epoch += 1


def _fresh_process():
    _forget_import_caches()
    _reseed()
    _forget_gpu_answers()


def _close_inherited(keep=()):
    """Only fds 0-2 (the kernel's log) and `keep` stay."""
    for s in _SOCKETS:
        try:
            s.detach()
        except OSError:
            pass
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _kernel_argv(req):
    return [sys.modules["ipykernel"].__path__[0].rsplit("/", 1)[0] +
            "/ipykernel_launcher.py"] + list(req["argv"][3:])


def _last_words(who, e):
    try:
        _log("%s: %s: %s" % (who, e.__class__.__name__, e))
    except BaseException:
        pass


def _exit_kernel(code, dropped):
    if not dropped:
        os._exit(code)  # nothing of the template's runs as root in the sandbox
    try:
        import atexit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _start_app(app):
    try:
        _trace("kernel app: start (the kernel answers from here)")
        app.start()
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def _kernel_signals():
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _run_kernel(req, bpf, verdict_w):
    """In K: becomes the runtime's kernel. Never returns."""
    code = 1
    dropped = False
    try:
        env = {str(k): str(v) for k, v in req["env"].items()}
        shown = _show_as(req["argv"], dict(env, PWD="/content"))
        sys.orig_argv = list(req["argv"])
        os.setsid()
        _drop(int(req["uid"]), int(req["gid"]), bpf)
        dropped = True
        _close_inherited(keep=(verdict_w,))
        reason = _become(req, env)
        if not shown:
            reason = "the kernel's command line or environment is too long"
        os.write(verdict_w, (reason or "ok").encode()[:200])
        os.close(verdict_w)
        if reason:
            os._exit(0)
        _trace("kernel: dropped to the user, filter set, checks done")
        _fresh_process()
        sys.argv[:] = _kernel_argv(req)
        _kernel_signals()
        app = _kernel_app()
        _trace("kernel app: initialize")
        app.initialize()
        code = _start_app(app)
    except BaseException as e:  # never back into the template's code
        _last_words("kernel", e)
    _exit_kernel(code, dropped)


# ------------------------------------------------------------------ pre-started kernels (K, pool)
#
# A runtime of the instant pool ([runtimes] instant) is started for nobody:
# its sandbox has no user's Drive or caches yet, and its kernel K has run
# IPKernelApp.initialize() but not start(). K stays root inside the sandbox,
# runs none of a user's code and answers only kernel_info_request (the
# server's readiness check) until the server hands the runtime to a user;
# it keeps no capability but CAP_SETUID and CAP_SETGID, and has set
# no_new_privs and the runtime's seccomp filter before its first thread.
# Then the server puts that user's Drive and caches into the sandbox, gives
# /content and the home to the user's uid and writes the claim to K: one JSON
# line {"uid", "gid", "env", "argv"} on CLAIM_FIFO. K drops to the uid in
# every thread (and checks each), takes the environment, checks as the user
# (as _run_kernel does), answers "ok" or why not on CLAIMED_FIFO, and starts.
# Both FIFOs are root's (0600) in the read-only state folder: no one in the
# sandbox but K (root, before the claim) can open them.

CLAIM_FIFO = "/opt/skylab/state/claim"
CLAIMED_FIFO = "/opt/skylab/state/claimed"
MAX_CLAIM = 1 << 20


def _open_fifo(path):
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    st = os.fstat(fd)
    import stat as stat_mod
    if not stat_mod.S_ISFIFO(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        os.close(fd)
        raise ValueError("%s is not root's private FIFO" % path)
    return fd


def _answer_kernel_info(app):
    """Before the claim: kernel_info_request gets its reply (and the iopub
    busy/idle around it); every other message is dropped unread."""
    import zmq
    while True:
        try:
            idents, msg = app.session.recv(app.shell_socket, mode=zmq.NOBLOCK)
        except zmq.Again:
            return
        except Exception as e:  # a message that does not verify: not ours
            _log("pre-started kernel: dropped a message: %s" % e)
            continue
        if msg is None:
            return
        if msg.get("header", {}).get("msg_type") != "kernel_info_request":
            continue
        kernel = app.kernel
        topic = kernel._topic("status")
        app.session.send(app.iopub_socket, "status", {"execution_state": "busy"},
                         parent=msg, ident=topic)
        content = {"status": "ok"}
        content.update(kernel.kernel_info)
        app.session.send(app.shell_socket, "kernel_info_reply", content, parent=msg,
                         ident=idents)
        app.session.send(app.iopub_socket, "status", {"execution_state": "idle"},
                         parent=msg, ident=topic)


def _wait_for_claim(app, claim_fd):
    import zmq
    poller = zmq.Poller()
    poller.register(app.shell_socket, zmq.POLLIN)
    poller.register(claim_fd, zmq.POLLIN)
    buf = b""
    while True:
        for what, _ in poller.poll():
            if what is app.shell_socket:
                _answer_kernel_info(app)
                continue
            try:
                chunk = os.read(claim_fd, 65536)
            except BlockingIOError:
                continue
            buf += chunk
            if len(buf) > MAX_CLAIM:
                raise ValueError("claim too large")
            if b"\n" in buf:
                return json.loads(buf.split(b"\n", 1)[0])


def _valid_kernel(d):
    """What a request and a claim both carry: ints uid and gid, an environment
    of strings (fewer than 1000), an argv of strings."""
    return (isinstance(d, dict) and isinstance(d.get("uid"), int) and
            isinstance(d.get("gid"), int) and isinstance(d.get("env"), dict) and
            len(d["env"]) < 1000 and
            all(isinstance(k, str) and isinstance(v, str) for k, v in d["env"].items()) and
            isinstance(d.get("argv"), list) and all(isinstance(a, str) for a in d["argv"]))


def _run_pool_kernel(req, bpf, verdict_w):
    """In K, for a runtime of the instant pool: initialises ipykernel as
    root in the sandbox, waits for the claim, becomes the user's. Never returns."""
    code = 1
    dropped = False
    try:
        env = {str(k): str(v) for k, v in req["env"].items()}
        os.setsid()
        claim_fd = _open_fifo(CLAIM_FIFO)
        claimed_fd = _open_fifo(CLAIMED_FIFO)
        _close_inherited(keep=(verdict_w, claim_fd, claimed_fd))
        # Root until the claim, but only able to change its ids, with
        # no_new_privs and the runtime's filter, before any thread exists.
        _keep_only_setid_caps()
        _filter(bpf)
        _become(req, env)
        sys.argv[:] = _kernel_argv(req)
        _kernel_signals()
        app = _kernel_app()
        before = dict(os.environ)
        app.initialize()
        # What initialize() put into the environment (TERM, PAGER, MPLBACKEND...):
        # a kernel that initialises after its claim has it over the runtime's.
        init_env = {k: v for k, v in os.environ.items() if before.get(k) != v}
        os.write(verdict_w, b"ok")
        os.close(verdict_w)
        _trace("pre-started kernel: initialised, waiting for its user")
        claim = _wait_for_claim(app, claim_fd)
        os.close(claim_fd)
        if not _valid_kernel(claim) or claim["argv"][1:] != req["argv"][1:]:
            raise ValueError("invalid claim")
        _T0[:] = [time.monotonic()] if _T0 else []
        _trace("claim")
        env = {str(k): str(v) for k, v in claim["env"].items()}
        shown = _show_as(claim["argv"], dict(env, PWD="/content"))
        sys.orig_argv = list(claim["argv"])
        try:
            _drop(int(claim["uid"]), int(claim["gid"]), bpf, filtered=True)
            dropped = True
            reason = _become(claim, env)
            os.environ.update(init_env)
            app.init_path()  # '' before site-packages again, as initialize() put it
            if not shown:
                reason = "the kernel's command line or environment is too long"
        except Exception as e:
            reason = "%s: %s" % (e.__class__.__name__, e)
        os.write(claimed_fd, ((reason or "ok") + "\n").encode()[:200])
        os.close(claimed_fd)
        if reason or not dropped:
            os._exit(0)
        _trace("kernel: dropped to the user, filter set, checks done")
        _fresh_process()
        code = _start_app(app)
    except BaseException as e:  # never back into the template's code
        _last_words("pre-started kernel", e)
    _exit_kernel(code, dropped)


# ------------------------------------------------------------------ C: enter the sandbox

def _enter(conn, req, fds):
    """In C (root): joins the runtime and forks K. Answers on `conn`. Never returns."""
    ok = False
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        if len(fds) not in (10, 11):
            raise ValueError("expected 10 or 11 fds")
        bpf = b""
        if len(fds) == 11:
            bpf = os.pread(fds[10], 1 << 20, 0)
            if not bpf or len(bpf) % 8:
                raise ValueError("bad seccomp filter")
        elif req.get("seccomp"):
            raise ValueError("seccomp requested without a filter")
        for i in range(3):
            os.dup2(fds[i], i)
        for path in req["cgroups"]:
            if not path.startswith("/sys/fs/cgroup/") or "/../" in path + "/":
                raise ValueError("bad cgroup path")
            fd = os.open(path + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        for fd in fds[3:9]:
            _setns(fd)
        os.fchdir(fds[9])
        os.chroot(".")
        os.chdir("/")
        _trace("joined the sandbox (cgroups, namespaces, root)")
        r, w = os.pipe()
        kid = os.fork()
        if kid == 0:
            os.close(r)
            (_run_pool_kernel if req.get("pool") else _run_kernel)(req, bpf, w)
        os.close(w)
        pidfd = os.pidfd_open(kid)
        verdict = b""
        while True:
            chunk = os.read(r, 256)
            if not chunk:
                break
            verdict += chunk
        if verdict == b"ok":
            reply = {"ok": True, "pid": kid}
            socket.send_fds(conn, [json.dumps(reply).encode()], [pidfd])
            ok = True
        else:
            os.waitpid(kid, 0)
            conn.sendall(json.dumps({"ok": False, "error": verdict.decode(errors="replace")
                                     or "the kernel could not start"}).encode())
    except BaseException as e:
        try:
            conn.sendall(json.dumps({"ok": False, "error": "%s: %s" % (
                e.__class__.__name__, e)}).encode())
        except BaseException:
            pass
    os._exit(0 if ok else 1)


def _valid(req):
    return (_valid_kernel(req) and
            isinstance(req.get("cgroups"), list) and 0 < len(req["cgroups"]) <= 8 and
            all(isinstance(c, str) for c in req["cgroups"]) and len(req["argv"]) == 5 and
            req["argv"][0] in PYTHON_NAMES + (sys.executable,) and
            req["argv"][1:3] == ["-m", "ipykernel_launcher"] and req["argv"][3] == "-f" and
            isinstance(req.get("pool", False), bool))


def _trace(what):
    """--trace: how long each step of a start took, in the kernel's log."""
    if _T0:
        # fd 2, not sys.stderr: ipykernel sends that to the notebook once it started.
        os.write(2, ("skylab template: %+.1f ms %s (at %.3f)\n" % (
            (time.monotonic() - _T0[0]) * 1e3, what, time.time())).encode())


def _serve_one(conn):
    conn.settimeout(5)
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, peer_uid, _ = struct.unpack("3i", creds)
    fds = []
    try:
        if peer_uid != 0:
            raise ValueError("peer is not root")
        msg, fds, flags, _ = socket.recv_fds(conn, MAX_REQUEST, MAX_FDS)
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            raise ValueError("request truncated")
        while msg:  # the rest, up to the client's end of writing (no more fds come)
            more = conn.recv(65536)
            if not more:
                break
            msg += more
            if len(msg) > MAX_REQUEST:
                raise ValueError("request too large")
        req = json.loads(msg)
        if not _valid(req):
            raise ValueError("invalid request")
    except Exception as e:
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(json.dumps({"ok": False, "error": str(e)}).encode())
        except OSError:
            pass
        return
    if _T0:
        _T0[0] = time.monotonic()
        _trace("request")
    pid = os.fork()
    if pid == 0:
        try:
            _SOCKETS[0].close()
        except BaseException:
            pass
        _enter(conn, req, fds)
    for fd in fds:
        os.close(fd)


def _reap(*_):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop(*_):
    """SIGTERM (the server stops): the kernels that died are reaped here, not
    left to whoever inherits them; those still running (runtimes kept across
    a server restart) go on without their template."""
    _reap()
    os._exit(0)


_SOCKETS = []
_BASE_PATH = []
_IMPORT_ENV = {}
_FORGET_FINDERS = []  # _import_caches_to_forget(), as the template serves
_T0 = []  # [request time] with --trace


def main(argv):
    sock_path, names = None, []
    i = 0
    while i < len(argv):
        if argv[i] == "--socket" and i + 1 < len(argv):
            sock_path = argv[i + 1]
            i += 2
        elif argv[i] == "--trace":
            _T0.append(0.0)
            i += 1
        elif argv[i] == "--pad" and i + 1 < len(argv):
            i += 2
        elif argv[i] == "--preload" and i + 1 < len(argv):
            names = [n for n in argv[i + 1].split(",") if n]
            i += 2
        else:
            _log("usage: python3 -m skylab.template --socket PATH [--preload a,b]")
            return 2
    if not sock_path or os.geteuid() != 0:
        _log("needs --socket and root")
        return 2
    parent = os.getppid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # goes with the server
    if os.getppid() != parent:
        return 1
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # No GPU for the template: an import that asks CUDA anything sees none and
    # touches no device (a CUDA context does not survive fork). Kernels get
    # their runtime's CUDA_VISIBLE_DEVICES and initialise CUDA themselves.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    # (Set here, not by the server: a kernel's /proc/self/environ must show no host path.)
    os.environ["MPLCONFIGDIR"] = os.path.join(os.path.dirname(sock_path), "matplotlib")
    t0 = time.monotonic()
    # The imports are background work (seconds of CPU, again whenever the
    # packages change): at nice 10 they do not slow the server or running
    # kernels. Serving (forking kernels) is back at 0, so kernels start at 0.
    os.setpriority(os.PRIO_PROCESS, 0, PRELOAD_NICE)
    before = dict(os.environ)
    failed = preload(names)
    # What the imports put into the environment (e.g. debugpy's
    # PYDEVD_USE_FRAME_EVAL): a kernel that imports them itself has it too.
    _IMPORT_ENV.update({k: v for k, v in os.environ.items() if before.get(k) != v})
    try:
        prepared = prepare_kernel_start(os.path.join(os.path.dirname(sock_path), "ipython"))
    except Exception as e:  # kernels then do all of their start themselves
        _PARSED[:] = []
        _SHELL[:] = []
        try:
            sys.modules["ipykernel.zmqshell"].ZMQInteractiveShell.clear_instance()
        except Exception:
            pass
        _log("kernels start without a prepared shell: %s: %s" % (e.__class__.__name__, e))
        prepared = []
    problems = fork_safety_problems()
    if problems:
        _log("cannot serve: " + ", ".join(problems))
        return 3
    paged = page_out_start_only_pages()
    # Everything imported so far is shared with every kernel: keep the
    # collector off those pages (copy-on-write) in the kernels.
    gc.collect()
    gc.freeze()
    holes = fill_allocator_holes()
    compact_module_names()
    # The interpreter's own path, without this module's source folder.
    # (Started as a script: sys.path[0] is this file's folder.)
    _BASE_PATH[:] = [p for p in sys.path[1:] if p]
    sys.modules.pop("__mp_main__", None)
    _FORGET_FINDERS[:] = _import_caches_to_forget()
    d = os.path.dirname(sock_path)
    st = os.lstat(d)
    if st.st_uid != 0 or st.st_mode & 0o077:
        _log("%s must be root's and 0700" % d)
        return 2
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    os.setpriority(os.PRIO_PROCESS, 0, 0)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    srv.bind(sock_path)
    os.umask(old)
    os.chmod(sock_path, 0o600)
    srv.listen(64)
    _SOCKETS.append(srv)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, _stop)
    _log("took %d free allocator blocks out of the kernels' way" % holes)
    _log("gave back the library pages only the imports used: %.0f -> %.0f MiB mapped by the template alone"
         % paged)
    if prepared:
        _log("prepared for every kernel: " + ", ".join(prepared))
    sys.stdout.write("ready %.2fs%s\n" % (time.monotonic() - t0,
                                          " (not preloaded: %s)" % ", ".join(failed)
                                          if failed else ""))
    sys.stdout.flush()
    while True:
        try:
            conn, _ = srv.accept()
        except InterruptedError:
            continue
        _SOCKETS.append(conn)
        try:
            _serve_one(conn)
        except Exception as e:
            _log("request: %s" % e)
        finally:
            _SOCKETS.remove(conn)
            conn.close()
        _reap()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

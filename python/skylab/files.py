"""Moving files between the browser and the runtime, as Colab's
``google.colab.files`` does (that name works too)::

    from skylab import files        # or: from google.colab import files
    files.download("model.pt")      # the browser saves model.pt
    uploaded = files.upload()       # the browser asks for files; returns {name: bytes}

How it works (details in docs/files.md):

* ``download(path)`` shows an output of type
  ``application/vnd.skylab.download+json``; Skylab's notebook page fetches the
  bytes from the server's runtime files API
  (``/api/skylab/runtimes/{id}/files/{path}``) and saves them. Files under
  ``/content`` are served in place; files in the Drive
  (``/content/drive``) are fetched from the Drive; any other file is first
  copied to ``/content/.skylab/downloads/``. Without a browser (``skylab
  run``) it prints a notice and returns.
* ``upload()`` sends an ``input()`` request whose prompt starts with
  ``skylab.files.upload:``; the page shows a file picker, uploads the chosen
  files straight into ``/content/.skylab/uploads/<token>/`` through the
  runtime files API (in chunks, never through the kernel), and answers the
  request with the list of names. ``upload()`` then moves them into
  ``target_dir`` (the current directory by default) under unique names and
  returns their contents.
"""
import json
import os
import secrets
import shutil
import sys
import time

__all__ = ["download", "upload", "DOWNLOAD_MIME", "UPLOAD_PROMPT"]

DOWNLOAD_MIME = "application/vnd.skylab.download+json"
UPLOAD_PROMPT = "skylab.files.upload:"
CONTENT = "/content"
_HIDDEN = ".skylab"
_KEEP_SECONDS = 3600  # copies made for downloads are removed after an hour


def _content_root():
    """/content when this kernel is a Skylab runtime whose /content the
    server serves (a sandboxed runtime), else None."""
    if os.environ.get("SKYLAB_KERNEL_ID") and os.path.isdir(CONTENT):
        return CONTENT
    return None


def _within(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def _human(n):
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "bytes" else ("%.1f %s" % (n, unit))
        n /= 1000.0
    return str(n)


def _sweep(directory, keep_seconds=_KEEP_SECONDS):
    """Removes entries of `directory` older than keep_seconds."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    cutoff = time.time() - keep_seconds
    for name in names:
        p = os.path.join(directory, name)
        try:
            if os.lstat(p).st_mtime < cutoff:
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
        except OSError:
            pass


def _display(bundle):
    try:
        from IPython.display import display
    except ImportError:  # plain Python: nothing to show it in
        print(bundle["text/plain"])
        return
    display(bundle, raw=True)


def download(filename):
    """Sends `filename` (a path in the runtime) to the browser, which saves it.

    Raises FileNotFoundError when there is no such file. Without a browser
    (a headless ``skylab run``, or a kernel outside a Skylab runtime) prints
    where the file is and returns."""
    path = os.path.realpath(os.path.abspath(os.fspath(filename)))
    if not os.path.exists(path):
        raise FileNotFoundError("Cannot find file: %s" % filename)
    if os.path.isdir(path):
        raise IsADirectoryError("%s is a directory; download a file (e.g. make a zip with shutil.make_archive)"
                                % filename)
    name = os.path.basename(path)
    size = os.path.getsize(path)
    root = _content_root()
    kernel_id = os.environ.get("SKYLAB_KERNEL_ID", "")
    if root is None:
        print("files.download: no browser is attached to this kernel (headless run); %s stays at %s"
              % (name, path), file=sys.stderr)
        return
    root = os.path.realpath(root)
    drive = os.path.join(root, "drive")
    in_drive = _within(path, drive) and path != drive
    if in_drive and not any(p.startswith(".") for p in os.path.relpath(path, drive).split("/")):
        source, rel = "drive", os.path.relpath(path, drive)  # the Drive hides hidden names
    elif _within(path, root) and not in_drive:
        source, rel = "runtime", os.path.relpath(path, root)
    else:
        # Outside /content: a copy the server can serve, removed later.
        downloads = os.path.join(root, _HIDDEN, "downloads")
        os.makedirs(downloads, exist_ok=True)
        _sweep(downloads)
        folder = os.path.join(downloads, secrets.token_hex(8))
        os.makedirs(folder)
        shutil.copyfile(path, os.path.join(folder, name))
        source, rel = "runtime", os.path.relpath(os.path.join(folder, name), root)
    data = {"source": source, "path": rel, "name": name, "size": size, "kernel_id": kernel_id,
            "id": secrets.token_hex(8), "time": time.time()}
    _display({DOWNLOAD_MIME: data, "text/plain": "Download %s (%s)" % (name, _human(size))})


def _unique_name(directory, name):
    """`name`, or "stem (1).ext", "stem (2).ext" … if taken (as Colab)."""
    candidate = name
    stem, ext = os.path.splitext(name)
    i = 1
    while os.path.lexists(os.path.join(directory, candidate)):
        candidate = "%s (%d)%s" % (stem, i, ext)
        i += 1
    return candidate


def _ask_browser(prompt):
    """Sends an input_request with `prompt` and returns the reply."""
    try:
        from IPython.core.error import StdinNotImplementedError
    except ImportError:  # pragma: no cover - always there in a kernel
        StdinNotImplementedError = NotImplementedError
    try:
        return input(prompt)
    except StdinNotImplementedError:
        raise RuntimeError("files.upload() needs the notebook page in a browser: this cell was run by a client "
                           "that does not answer input requests (e.g. skylab run)") from None
    except EOFError:
        raise RuntimeError("files.upload() needs the notebook page in a browser; there is no input here") from None


def upload(target_dir=""):
    """Asks the browser for files and waits until they are uploaded.

    The files are saved in `target_dir` (relative to the current directory;
    by default the current directory) under their names, or "name (1).ext"
    … when taken, and returned as {original name: bytes}. An upload
    cancelled in the page returns {}."""
    root = _content_root()
    if root is None:
        raise RuntimeError("files.upload() needs the Skylab notebook page in a browser, and a Skylab runtime; "
                           "this kernel has neither (headless run or a kernel outside Skylab)")
    target = os.path.abspath(os.path.join(os.getcwd(), os.fspath(target_dir)))
    os.makedirs(target, exist_ok=True)
    token = secrets.token_hex(8)
    uploads = os.path.join(root, _HIDDEN, "uploads")
    os.makedirs(uploads, exist_ok=True)
    _sweep(uploads, 24 * 3600)
    staging = os.path.join(uploads, token)
    os.makedirs(staging)
    request = {"skylab.files": "upload", "version": 1, "dir": os.path.relpath(staging, root),
               "kernel_id": os.environ.get("SKYLAB_KERNEL_ID", ""), "multiple": True}
    try:
        reply = _ask_browser(UPLOAD_PROMPT + json.dumps(request, separators=(",", ":")))
        try:
            answer = json.loads(reply)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RuntimeError("files.upload(): the page did not answer with an upload (got %r); use Skylab's "
                               "notebook page" % (reply[:80],))
        if answer.get("error"):
            raise RuntimeError("files.upload() failed in the browser: %s" % answer["error"])
        if answer.get("cancelled") or not answer.get("files"):
            print("Upload cancelled.")
            return {}
        result = {}
        for entry in answer["files"]:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise RuntimeError("files.upload(): the page sent an invalid file name %r" % (name,))
            src = os.path.join(staging, name)
            if not os.path.isfile(src) or os.path.islink(src):
                raise RuntimeError("files.upload(): %s did not arrive in the runtime" % name)
            with open(src, "rb") as f:
                data = f.read()
            local = _unique_name(target, name)
            shutil.move(src, os.path.join(target, local))
            shown = os.path.relpath(os.path.join(target, local))
            print("Saving %s to %s" % (name, shown))
            result[name] = data
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""``google.colab.drive`` in Skylab: the Drive is always mounted, so
``drive.mount()`` only checks and says so.

Skylab's Drive is ``/content/drive``; Colab's paths work too:
``/content/drive/MyDrive`` is the same folder (a ``MyDrive -> .`` link at the
Drive's top, made when the runtime starts and again here), so
``/content/drive/MyDrive/data/x.csv`` and ``/content/drive/data/x.csv`` are
one file."""
import os

__all__ = ["mount", "flush_and_unmount"]

_MOUNT = "/content/drive"
_COLAB_ROOT = "MyDrive"


def _ensure_colab_alias():
    """Makes /content/drive/MyDrive name the Drive (nothing when a file or
    folder of the user's already has that name)."""
    try:
        os.symlink(".", os.path.join(_MOUNT, _COLAB_ROOT))
    except FileExistsError:
        pass
    except OSError:
        pass  # a read-only Drive: /content/drive still works


def mount(mountpoint=_MOUNT, force_remount=False, timeout_ms=None, readonly=False):
    """Colab asks for authorization here; Skylab's runtimes already have the
    user's Drive at /content/drive, also reachable as /content/drive/MyDrive
    (Colab's path)."""
    target = os.path.abspath(os.fspath(mountpoint))
    if target != _MOUNT:
        raise ValueError("Skylab mounts the Drive at %s only" % _MOUNT)
    if not os.path.isdir(_MOUNT):
        raise RuntimeError("This runtime has no Drive at %s (it is not a Skylab runtime)" % _MOUNT)
    _ensure_colab_alias()
    print("Mounted at %s" % _MOUNT)


def flush_and_unmount(timeout_ms=None):
    """Files are written to the Drive directly: nothing to flush."""
    print("Drive stays mounted at %s; files are saved as they are written." % _MOUNT)

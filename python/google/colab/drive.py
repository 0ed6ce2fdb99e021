"""``google.colab.drive`` in Skylab: the Drive is always mounted at
/content/drive, so ``drive.mount()`` only checks and says so."""
import os

__all__ = ["mount", "flush_and_unmount"]

_MOUNT = "/content/drive"


def mount(mountpoint=_MOUNT, force_remount=False, timeout_ms=None, readonly=False):
    """Colab asks for authorization here; Skylab's runtimes already have the
    user's Drive at /content/drive (files at its top, no MyDrive folder)."""
    target = os.path.abspath(os.fspath(mountpoint))
    if target != _MOUNT:
        raise ValueError("Skylab mounts the Drive at %s only" % _MOUNT)
    if not os.path.isdir(_MOUNT):
        raise RuntimeError("This runtime has no Drive at %s (it is not a Skylab runtime)" % _MOUNT)
    print("Mounted at %s" % _MOUNT)


def flush_and_unmount(timeout_ms=None):
    """Files are written to the Drive directly: nothing to flush."""
    print("Drive stays mounted at %s; files are saved as they are written." % _MOUNT)

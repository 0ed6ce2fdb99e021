"""Deadlines and expiry hooks of the current Skylab runtime.

The server writes the runtime's state (deadlines, and a request to run the
expiry hooks) to a small JSON file whose path is in SKYLAB_RUNTIME_STATE.
A daemon thread watches it; callbacks registered with on_expiry() run on
that thread, once, before the runtime is stopped (idle timeout or maximum
lifetime), so that training code can save a checkpoint.
"""
import json
import os
import threading
import time

_lock = threading.Lock()
_callbacks = []
_ran = False
_watcher = None
_POLL_SECONDS = 0.5


def _state():
    path = os.environ.get("SKYLAB_RUNTIME_STATE")
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def deadline():
    """Seconds since the epoch when this runtime will be stopped, or None.

    The earlier of the maximum-lifetime deadline and the current idle
    deadline (which moves while the notebook is used)."""
    s = _state()
    times = [t for t in (s.get("lifetime_deadline"), s.get("idle_deadline")) if t]
    return min(times) if times else None


def time_left():
    """Seconds until deadline(), or None."""
    d = deadline()
    return None if d is None else max(0.0, d - time.time())


def on_expiry(callback):
    """Registers callback() to run once before the runtime is stopped.

    Returns the callback, so it can be used as a decorator."""
    if not callable(callback):
        raise TypeError("on_expiry needs a callable")
    with _lock:
        _callbacks.append(callback)
    _ensure_watcher()
    return callback


def _run_hooks(reason):
    global _ran
    with _lock:
        if _ran:
            return
        _ran = True
        callbacks = list(_callbacks)
    for cb in callbacks:
        try:
            cb()
        except Exception as e:  # a failing hook must not stop the others
            print(f"skylab: expiry hook {cb!r} failed: {e}", flush=True)
    # The state file is read-only in a sandbox; the acknowledgement goes to
    # SKYLAB_RUNTIME_ACK (older servers: beside the state file).
    ack = os.environ.get("SKYLAB_RUNTIME_ACK")
    if not ack and os.environ.get("SKYLAB_RUNTIME_STATE"):
        ack = os.environ["SKYLAB_RUNTIME_STATE"] + ".done"
    if ack:
        try:
            with open(ack, "w") as f:
                f.write(reason)
        except OSError:
            pass


def _watch():
    while True:
        s = _state()
        if s.get("expire"):
            _run_hooks(s.get("reason", "expired"))
            return
        time.sleep(_POLL_SECONDS)


def _ensure_watcher():
    global _watcher
    with _lock:
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, name="skylab-expiry", daemon=True)
            _watcher.start()

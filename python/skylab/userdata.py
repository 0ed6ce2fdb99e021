"""Secrets for notebooks, as Colab's ``google.colab.userdata`` (that name
works too)::

    from google.colab import userdata      # or: from skylab import userdata
    key = userdata.get("KAGGLE_KEY")

Secrets are kept by the Skylab server (the key icon panel of the notebook
page, or ``/api/skylab/secrets``); a notebook reads one only after its owner
switched on "Notebook access" for it.

How it works: ``get`` sends a signed ``skylab_secret_request`` on this
kernel's own stdin channel; only the server's connection to this kernel
receives it, and the server answers there with the value, or with why not.
The server knows the asking notebook by the kernel the request came from (its
session), never from anything in the request. Values are never put in the
environment, in files or in outputs by Skylab.
"""
import os
import re
import threading
import time
import uuid

__all__ = ["get", "SecretNotFoundError", "NotebookAccessError", "TimeoutException"]

REQUEST = "skylab_secret_request"
REPLY = "skylab_secret_reply"
_TIMEOUT_SECONDS = 30.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_lock = threading.Lock()  # one request at a time on the kernel's stdin socket
_RESEND_SECONDS = 0.1  # first resend; doubling to 1 s


class NotebookAccessError(Exception):
    """The notebook has not been given access to the secret."""

    def __init__(self, key):
        super().__init__(f"Notebook does not have access to secret {key}")


class SecretNotFoundError(Exception):
    """No secret of that name exists."""

    def __init__(self, key):
        super().__init__(f"Secret {key} does not exist.")


class TimeoutException(Exception):
    """The server did not answer in time."""

    def __init__(self, key):
        super().__init__(f"Requesting secret {key} timed out.")


# Colab's module path, so that `except userdata.SecretNotFoundError` and
# tracebacks read as in Colab whichever module was imported.
for _cls in (NotebookAccessError, SecretNotFoundError, TimeoutException):
    _cls.__module__ = "google.colab.userdata"


def _kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    return getattr(ip, "kernel", None) if ip is not None else None


def _drain_duplicates(sock, session, count, wait_seconds=0.5):
    """Reads the answers to repeated requests, so that none is left on the
    stdin socket for a later input() to take as its reply."""
    deadline = time.monotonic() + wait_seconds
    while count > 0:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(left * 1000):
            return
        try:
            _, msg = session.recv(sock)
        except Exception:  # noqa: BLE001
            continue
        if msg and msg.get("msg_type") == REPLY:
            count -= 1


def get(key):
    """The value of secret ``key`` (a str).

    Raises SecretNotFoundError when there is no such secret,
    NotebookAccessError when this notebook has not been given access to it,
    TimeoutException when the server does not answer.
    """
    if not isinstance(key, str) or not _NAME.fullmatch(key):
        raise SecretNotFoundError(key)  # no secret can have that name
    kernel = _kernel()
    if kernel is None or getattr(kernel, "stdin_socket", None) is None or not os.environ.get("SKYLAB_RUNTIME_STATE"):
        raise NotebookAccessError(key)
    with _lock:
        return _ask(kernel, key)


def _ask(kernel, key):
    import zmq

    session = kernel.session
    sock = kernel.stdin_socket
    # Stale replies (an earlier, abandoned request) are dropped first.
    while True:
        try:
            sock.recv_multipart(zmq.NOBLOCK)
        except zmq.ZMQError as e:
            if e.errno == zmq.EAGAIN:
                break
            raise
    request_id = uuid.uuid4().hex
    parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
    ident = kernel._parent_ident["shell"] if isinstance(kernel._parent_ident, dict) else kernel._parent_ident
    request = {"name": key, "request_id": request_id}
    sends = 0
    now = time.monotonic()
    deadline = now + _TIMEOUT_SECONDS
    resend = now
    while True:
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            raise TimeoutException(key)
        if now >= resend:
            # ZeroMQ drops a message to a peer whose connection is not up yet
            # (a kernel that just started): ask again until answered.
            session.send(sock, REQUEST, request, parent, ident=ident)
            sends += 1
            resend = now + min(_RESEND_SECONDS * 2 ** (sends - 1), 1.0)
        if not sock.poll(min(left, resend - now, 0.05) * 1000):
            continue
        try:
            _, msg = session.recv(sock)
        except Exception:  # noqa: BLE001 - an invalid message is skipped, as ipykernel does
            continue
        if not msg or msg.get("msg_type") != REPLY:
            continue
        content = msg.get("content") or {}
        if content.get("request_id") != request_id:
            continue
        _drain_duplicates(sock, session, sends - 1)
        if content.get("status") == "ok":
            return content.get("value")
        ename = content.get("ename")
        if ename == "SecretNotFoundError":
            raise SecretNotFoundError(key)
        if ename == "NotebookAccessError":
            raise NotebookAccessError(key)
        raise RuntimeError(content.get("evalue") or f"Could not read secret {key}")

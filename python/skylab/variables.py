"""What the notebook's Variables panel shows: the kernel's user variables
with their type, shape and size. Called only while the panel is open, by a
silent execute_request (no history, no outputs) through `user_expressions`:

    __import__("skylab.variables").variables.summary()

Cheap and bounded: no user __repr__ is called (only numbers, strings, bools
and None get a short value), at most MAX_VARIABLES names.
"""

import json
import sys
import types

MAX_VARIABLES = 500
MAX_VALUE = 80

_SKIP_TYPES = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)


class _Json(str):
    """A str whose repr is itself: the text/plain of user_expressions is plain JSON."""

    def __repr__(self):
        return str(self)


def _shape(v):
    shape = getattr(v, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return list(shape)
    if isinstance(v, (list, tuple, dict, set, frozenset, str, bytes)):
        return [len(v)]
    return None


def _size(v):
    nbytes = getattr(v, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    mu = getattr(v, "memory_usage", None)
    if callable(mu) and type(v).__module__.startswith("pandas"):
        try:
            total = mu(index=True, deep=False)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
        except Exception:
            pass
    try:
        return sys.getsizeof(v)
    except Exception:
        return None


def _value(v):
    if v is None or isinstance(v, (bool, int, float, complex)):
        text = repr(v)
    elif isinstance(v, str):
        text = repr(v[: MAX_VALUE + 1])
    else:
        return None
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def summary(ns=None, hidden=None):
    """The user's variables as a JSON array of {name, type, shape, size, value}."""
    if ns is None:
        from IPython import get_ipython

        ip = get_ipython()
        ns, hidden = ip.user_ns, ip.user_ns_hidden
    hidden = hidden or {}
    out = []
    for name, v in list(ns.items()):
        if name.startswith("_") or (name in hidden and hidden[name] is v):
            continue
        if isinstance(v, _SKIP_TYPES) or name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        t = type(v)
        out.append({
            "name": name,
            "type": t.__name__,
            "module": t.__module__ if t.__module__ != "builtins" else "",
            "shape": _shape(v),
            "size": _size(v),
            "value": _value(v),
        })
        if len(out) >= MAX_VARIABLES:
            break
    out.sort(key=lambda x: x["name"].lower())
    return _Json(json.dumps(out))

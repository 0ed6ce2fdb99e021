"""Interactive tables for pandas DataFrames, as Colab's ``data_table``::

    from google.colab import data_table     # or: from skylab import data_table
    data_table.enable_dataframe_formatter()   # every DataFrame shown as a table
    data_table.DataTable(df)                  # one frame, whatever the setting
    data_table.disable_dataframe_formatter()

How it works (details in docs/forms-and-tables.md):

* A frame is shown as an output with two MIME types: ``text/html`` (pandas'
  own table, so the notebook renders anywhere) and
  ``application/vnd.skylab.datatable+json``: an id, the columns, their
  dtypes, the number of rows and the first page. Skylab's notebook page
  renders that as a table that sorts, filters and pages.
* The frame stays in this kernel, in a registry of the ``MAX_TABLES`` most
  recently shown frames (older ones are let go). The page asks for more
  rows over a Jupyter comm (target ``skylab.datatable``): one message per
  page, one page back. Only pages cross the wire, never the whole frame.
"""
import collections
import itertools
import json
import secrets
import threading

__all__ = ["DataTable", "enable_dataframe_formatter", "disable_dataframe_formatter",
           "MIME", "COMM_TARGET"]

MIME = "application/vnd.skylab.datatable+json"
COMM_TARGET = "skylab.datatable"
MAX_TABLES = 32          # frames kept for paging (least recently shown let go)
MAX_KEPT_BYTES = 1 << 30 # and at most this much of them (the newest is always kept)
MAX_PAGE = 500           # rows in one answer
MAX_COLUMNS = 200        # columns shown
MAX_CELL = 1000          # characters of one cell's text
MAX_FILTER = 1000        # characters of a filter
DEFAULT_PAGE = 25

_tables = collections.OrderedDict()   # id -> _Entry
_lock = threading.Lock()
_ids = itertools.count(1)
_enabled = False
_comm_registered = False


class _Entry(object):
    __slots__ = ("frame", "view_key", "view", "nbytes")

    def __init__(self, frame):
        self.frame = frame
        try:
            self.nbytes = int(frame.memory_usage(index=True, deep=False).sum())
        except Exception:
            self.nbytes = 0
        self.view_key = None   # (sort column, ascending, filter) of the cached view
        self.view = None       # the sorted/filtered frame for view_key


def _register(frame):
    """Keeps `frame` for paging; returns its id."""
    # Random, not a counter: a table saved from another kernel (or before a
    # restart) never names a different frame of this one.
    table_id = "%d-%s" % (next(_ids), secrets.token_hex(6))
    with _lock:
        _tables[table_id] = _Entry(frame)
        while len(_tables) > MAX_TABLES:
            _tables.popitem(last=False)
        kept = sum(e.nbytes for e in _tables.values())
        while kept > MAX_KEPT_BYTES and len(_tables) > 1:
            kept -= _tables.popitem(last=False)[1].nbytes
    return table_id


def _text(v):
    try:
        s = str(v)
    except Exception:  # a broken __str__ in a cell never breaks the table
        s = "<unprintable>"
    return s if len(s) <= MAX_CELL else s[:MAX_CELL - 1] + "\u2026"


def _page(frame, offset, limit):
    part = frame.iloc[offset:offset + limit, :MAX_COLUMNS]
    rows = [[_text(v) for v in row] for row in part.itertuples(index=False, name=None)]
    return {"offset": offset, "rows": rows, "index": [_text(i) for i in part.index]}


def _describe(table_id, frame, limit=DEFAULT_PAGE):
    cols = list(frame.columns[:MAX_COLUMNS])
    out = {
        "version": 1,
        "id": table_id,
        "columns": [_text(c) for c in cols],
        "dtypes": [str(frame.dtypes.iloc[i]) for i in range(len(cols))],
        "total_columns": int(frame.shape[1]),
        "total_rows": int(frame.shape[0]),
        "total": int(frame.shape[0]),
        "index_name": _text(frame.index.name) if frame.index.name is not None else "",
        "page_size": limit,
    }
    out.update(_page(frame, 0, limit))
    return out


def _bundle(frame):
    table_id = _register(frame)
    _ensure_comm_target()
    try:
        html = frame._repr_html_()
    except Exception:
        html = None
    bundle = {MIME: _describe(table_id, frame)}
    if html:
        bundle["text/html"] = html
    return bundle


_NUMBER_CHARS = frozenset("0123456789.-+eainf")


def _could_match(dtype, needle):
    """Whether a column of `dtype` can hold text containing `needle`
    (numbers and booleans are skipped when it cannot: no text conversion)."""
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return needle in "true" or needle in "false"
    if kind in "iuf":
        return set(needle) <= _NUMBER_CHARS
    return True


def _contains(col, needle):
    """Rows of `col` whose text (as the table shows it) contains `needle`
    (lower case), ignoring case. A plain loop: several times faster than
    pandas' string methods, which convert every value first."""
    import numpy as np
    vals = col.to_numpy(dtype=object)
    try:
        return np.fromiter((needle in (v if type(v) is str else str(v)).lower() for v in vals),
                           dtype=bool, count=len(vals))
    except Exception:  # an object whose __str__ fails: the slow, careful way
        return np.fromiter((needle in _text(v).lower() for v in vals), dtype=bool, count=len(vals))


def _view(entry, sort, ascending, flt):
    """Row positions of the frame sorted by column index `sort` (or None)
    and filtered by the case-insensitive substring `flt`; None for all rows
    in order. Cached for the last such request."""
    import numpy as np
    key = (sort, ascending, flt)
    if entry.view_key == key:
        return entry.view
    frame = entry.frame
    positions = None
    if flt:
        needle = flt.lower()
        mask = np.zeros(frame.shape[0], dtype=bool)
        for i in range(min(frame.shape[1], MAX_COLUMNS)):
            col = frame.iloc[:, i]
            if not _could_match(col.dtype, needle):
                continue
            mask |= _contains(col, needle)
        positions = np.flatnonzero(mask)
    if sort is not None and 0 <= sort < frame.shape[1]:
        col = frame.iloc[:, sort].reset_index(drop=True)
        if positions is not None:
            col = col.iloc[positions]
        try:
            order = col.sort_values(ascending=ascending, kind="mergesort", na_position="last").index
        except Exception:  # mixed or unorderable types: sort by the text the table shows
            order = col.map(_text).sort_values(ascending=ascending, kind="mergesort").index
        positions = np.asarray(order, dtype=np.int64)
    entry.view_key, entry.view = key, positions
    return positions


def handle_request(req):
    """Answers one page request (a dict from the page): ``{"id", "offset",
    "limit", "sort": column index or null, "ascending", "filter"}``.
    Returns the answer (a dict); errors are answers with ``"error"``."""
    if not isinstance(req, dict):
        return {"error": "bad request"}
    seq = req.get("seq")
    seq = seq if isinstance(seq, int) else None
    table_id = req.get("id")
    with _lock:
        entry = _tables.get(table_id) if isinstance(table_id, str) else None
    if entry is None:
        return {"seq": seq, "error": "This table is no longer in the runtime: run the cell again."}
    try:
        offset = max(0, int(req.get("offset", 0)))
        limit = min(MAX_PAGE, max(1, int(req.get("limit", DEFAULT_PAGE))))
        sort = req.get("sort")
        sort = int(sort) if isinstance(sort, (int, float)) and not isinstance(sort, bool) else None
        ascending = req.get("ascending", True) is not False
        flt = req.get("filter") or ""
        flt = str(flt)[:MAX_FILTER]
    except (TypeError, ValueError, OverflowError):
        return {"seq": seq, "error": "bad request"}
    positions = _view(entry, sort, ascending, flt)
    frame = entry.frame
    total = frame.shape[0] if positions is None else len(positions)
    offset = min(offset, total)
    if positions is not None:
        frame = frame.iloc[positions[offset:offset + limit]]
        page = _page(frame, 0, limit)
        page["offset"] = offset
    else:
        page = _page(frame, offset, limit)
    out = {"seq": seq, "id": table_id, "total": int(total), "total_rows": int(entry.frame.shape[0])}
    out.update(page)
    return out


def _on_comm_open(comm, open_msg):
    def on_msg(msg):
        data = msg.get("content", {}).get("data")
        try:
            answer = handle_request(data)
        except Exception as e:  # never let a page request kill the comm
            answer = {"seq": data.get("seq") if isinstance(data, dict) else None, "error": "%s: %s" % (type(e).__name__, e)}
        comm.send(json.loads(json.dumps(answer, default=str)))
    comm.on_msg(on_msg)


def _ensure_comm_target():
    global _comm_registered
    if _comm_registered:
        return
    try:
        ip = get_ipython()  # noqa: F821 (a builtin inside IPython)
    except NameError:
        return
    kernel = getattr(ip, "kernel", None)
    manager = getattr(kernel, "comm_manager", None)
    if manager is None:
        return
    manager.register_target(COMM_TARGET, _on_comm_open)
    _comm_registered = True


class DataTable(object):
    """A DataFrame shown as an interactive table (Colab's ``DataTable``).
    Colab's keyword arguments (``include_index``, ``num_rows_per_page``,
    ``max_rows``, ``max_columns``, ``min_width``) are accepted;
    ``num_rows_per_page`` sets the page size, ``include_index=False`` hides
    the index; the others are ignored (pages come from the kernel)."""

    def __init__(self, dataframe, include_index=True, num_rows_per_page=DEFAULT_PAGE,
                 max_rows=None, max_columns=None, min_width=None):
        self._frame = dataframe
        self._page = min(MAX_PAGE, max(1, int(num_rows_per_page or DEFAULT_PAGE)))
        self._include_index = bool(include_index)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = _bundle(self._frame)
        bundle[MIME]["page_size"] = self._page
        bundle[MIME]["include_index"] = self._include_index
        bundle[MIME].update(_page(self._frame, 0, self._page))
        return bundle

    def __repr__(self):
        return repr(self._frame)


def _frame_formatter(obj, include=None, exclude=None):
    return _bundle(obj)


def enable_dataframe_formatter():
    """Shows every pandas DataFrame as an interactive table from now on."""
    global _enabled
    import pandas as pd
    ip = get_ipython()  # noqa: F821
    ip.display_formatter.mimebundle_formatter.for_type(pd.DataFrame, _frame_formatter)
    _ensure_comm_target()
    _enabled = True


def disable_dataframe_formatter():
    """DataFrames are shown as pandas' own HTML again."""
    global _enabled
    import pandas as pd
    ip = get_ipython()  # noqa: F821
    try:
        ip.display_formatter.mimebundle_formatter.pop(pd.DataFrame)
    except KeyError:
        pass
    _enabled = False


def _show_output(n):
    """Shows ``Out[n]`` (a DataFrame this kernel returned as a cell's result)
    as an interactive table: the page's "Interactive table" button on a
    plain DataFrame output runs this (silently, not recorded)."""
    from IPython.display import display
    import pandas as pd
    out = get_ipython().user_ns.get("Out", {})  # noqa: F821
    obj = out.get(n) if isinstance(n, int) and hasattr(out, "get") else None
    if not isinstance(obj, pd.DataFrame):
        raise LookupError("This output is not in the runtime any more: run its cell again.")
    display(DataTable(obj))

"""google.colab.data_table / skylab.data_table in a real kernel, driven
through the channels WebSocket the way the notebook page drives it: the
formatter's output carries the table MIME type (id, columns, dtypes, total,
first page) beside pandas' text/html; pages, sorts and filters are asked
over a comm (target skylab.datatable) and answered one page at a time;
hostile requests get an error answer, never a dead comm or kernel."""
import json
import uuid

import pytest

from conftest import SERVER_KIND

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab's python helpers")

MIME = "application/vnd.skylab.datatable+json"
TARGET = "skylab.datatable"


@pytest.fixture(scope="module")
def client(server):
    kid = server.create_kernel()
    c = server.connect(kid)
    c.nudge()
    yield c
    server.delete_kernel(kid)


def tables_of(result):
    return [m["content"]["data"] for m in result.iopub
            if m["header"]["msg_type"] in ("display_data", "execute_result") and MIME in m["content"]["data"]]


def ask(client, comm_id, req, timeout=60):
    """One comm_msg; returns the kernel's answer (the comm_msg back with the same seq)."""
    msg = client.send("shell", "comm_msg", {"comm_id": comm_id, "data": req})
    parent = msg["header"]["msg_id"]
    m = client.wait_for(lambda m: m.get("channel") == "iopub" and m["header"]["msg_type"] == "comm_msg"
                        and m.get("parent_header", {}).get("msg_id") == parent, timeout=timeout, what="table page")
    return m["content"]["data"]


@pytest.mark.parametrize("module", ["from google.colab import data_table", "from skylab import data_table"])
def test_formatter_output_and_pages(client, module):
    r = client.execute(module + "\nimport pandas as pd, numpy as np\n"
                       "df = pd.DataFrame({'n': np.arange(100000), 'sq': np.arange(100000) ** 2,"
                       " 'name': ['row%d' % i for i in range(100000)]})\n"
                       "data_table.enable_dataframe_formatter()\ndf", timeout=120)
    assert r.status == "ok", (r.error, r.stderr)
    [data] = tables_of(r)
    t = data[MIME]
    assert "text/html" in data and "<table" in data["text/html"], "pandas' HTML kept as the fallback"
    assert t["columns"] == ["n", "sq", "name"]
    assert t["dtypes"] == ["int64", "int64", "object"]
    assert t["total_rows"] == 100000
    assert len(t["rows"]) == t["page_size"] == 25
    assert t["rows"][3] == ["3", "9", "row3"] and t["index"][3] == "3"
    assert len(json.dumps(data)) < 20000, "the output holds one page, not the frame"

    comm_id = uuid.uuid4().hex
    client.send("shell", "comm_open", {"comm_id": comm_id, "target_name": TARGET, "data": {}})
    p = ask(client, comm_id, {"seq": 1, "id": t["id"], "offset": 25, "limit": 25})
    assert p["seq"] == 1 and p["offset"] == 25 and p["total"] == 100000
    assert p["rows"][0] == ["25", "625", "row25"]
    p = ask(client, comm_id, {"seq": 2, "id": t["id"], "offset": 0, "limit": 3, "sort": 1, "ascending": False})
    assert [row[0] for row in p["rows"]] == ["99999", "99998", "99997"]
    p = ask(client, comm_id, {"seq": 3, "id": t["id"], "offset": 0, "limit": 20, "sort": 0, "ascending": False, "filter": "ROW9999"})
    assert p["total"] == 11, p  # row9999 and row99990..row99999
    assert p["rows"][0][2] == "row99999" and p["rows"][-1][2] == "row9999"
    # Hostile requests: errors as answers; the comm still answers afterwards.
    for seq, bad in enumerate([{"id": "nope"}, {"id": t["id"], "offset": "x"}, {"id": t["id"], "limit": 10 ** 12},
                               {"id": t["id"], "sort": 10 ** 6}, {"id": t["id"], "filter": "x" * 100000},
                               {"id": ["list"]}], start=10):
        p = ask(client, comm_id, dict(bad, seq=seq))
        assert p["seq"] == seq
        assert "error" in p or len(p["rows"]) <= 500, p
    p = ask(client, comm_id, {"seq": 99, "id": t["id"], "offset": 99999, "limit": 5})
    assert p["rows"] == [["99999", str(99999 ** 2), "row99999"]]

    r = client.execute(module + "\ndata_table.disable_dataframe_formatter()\ndf.head(2)")
    assert r.status == "ok"
    assert not tables_of(r), "plain pandas output after disable"
    r = client.execute(module + "\ndata_table.DataTable(df.head(7), num_rows_per_page=10)")
    [data] = tables_of(r)
    assert data[MIME]["total_rows"] == 7 and len(data[MIME]["rows"]) == 7
    assert data[MIME]["page_size"] == 10 and data[MIME]["include_index"] is True
    r = client.execute(module + "\ndata_table.DataTable(df, include_index=False, num_rows_per_page=50)")
    [data] = tables_of(r)
    assert data[MIME]["include_index"] is False and len(data[MIME]["rows"]) == 50


def test_registry_is_bounded(client):
    r = client.execute("from skylab import data_table as d\nimport pandas as pd\n"
                       "for i in range(100): display(d.DataTable(pd.DataFrame({'a': [i]})))\n"
                       "print(len(d._tables), d.MAX_TABLES)", timeout=120)
    assert r.status == "ok", (r.error, r.stderr)
    ids = [t[MIME]["id"] for t in tables_of(r)]
    assert len(ids) == 100
    assert r.stdout.split() == ["32", "32"]
    comm_id = uuid.uuid4().hex
    client.send("shell", "comm_open", {"comm_id": comm_id, "target_name": TARGET, "data": {}})
    assert "no longer" in ask(client, comm_id, {"seq": 1, "id": ids[0]})["error"]
    assert ask(client, comm_id, {"seq": 2, "id": ids[-1]})["rows"] == [["99"]]
    # A byte bound too: two frames over it keep only the newest.
    r = client.execute("import numpy as np\nd.MAX_KEPT_BYTES = 10_000_000\n"
                       "for i in range(2): display(d.DataTable(pd.DataFrame({'a': np.zeros(1_000_000)})))\n"
                       "print(len(d._tables))\nd.MAX_KEPT_BYTES = 1 << 30", timeout=120)
    assert r.status == "ok", (r.error, r.stderr)
    assert r.stdout.split() == ["1"]


def test_hostile_cells_and_requests(client):
    """Cells whose __str__ raises, mixed types, huge texts: the table and its
    answers still come; a non-dict request gets an error answer."""
    r = client.execute("from skylab import data_table as d\nimport pandas as pd\n"
                       "class Bad:\n    def __str__(self): raise RuntimeError('boom')\n"
                       "d.DataTable(pd.DataFrame({'o': [Bad(), 'abc', 1.5, 'y' * 100000]}))", timeout=60)
    assert r.status == "ok", (r.error, r.stderr)
    [data] = tables_of(r)
    t = data[MIME]
    assert t["rows"][:3] == [["<unprintable>"], ["abc"], ["1.5"]]
    assert len(t["rows"][3][0]) == 1000
    comm_id = uuid.uuid4().hex
    client.send("shell", "comm_open", {"comm_id": comm_id, "target_name": TARGET, "data": {}})
    assert ask(client, comm_id, {"seq": 1, "id": t["id"], "sort": 0})["rows"][0] == ["1.5"]
    assert ask(client, comm_id, {"seq": 2, "id": t["id"], "filter": "UNPRINT"})["rows"] == [["<unprintable>"]]
    msg = client.send("shell", "comm_msg", {"comm_id": comm_id, "data": {"nested": [[[[1]]]]}})
    m = client.wait_for(lambda m: m.get("channel") == "iopub" and m["header"]["msg_type"] == "comm_msg"
                        and m.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"], timeout=30, what="answer")
    assert "error" in m["content"]["data"]
    assert client.execute("print(1 + 1)").stdout.strip() == "2"

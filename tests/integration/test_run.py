"""`skylab run`: headless notebook execution, checked against
`jupyter nbconvert --to notebook --execute` (nbclient) on the notebooks in
tests/notebooks/ (regenerate them with tests/notebooks/generate.py).

Run with Debian's python: /usr/bin/python3 -m pytest tests/integration/test_run.py
"""

import copy
import json
import math
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime

import nbformat
import pytest

from conftest import proc_alive, skylab_bin, wait_gone

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "tests" / "notebooks"
PYTHON = "/usr/bin/python3"
COMPARED = ["numpy_pandas", "plots", "magics", "display"]


# ---------------------------------------------------------------- helpers

def skylab(*args, cwd, timeout=120, input=None):
    """Runs `skylab run ARGS` (stdout/stderr captured, text)."""
    binary = skylab_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail("Skylab binary not found at %s (set SKYLAB_BIN)" % binary)
    return subprocess.run([binary, "run", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL if input is None else None, input=input)


def nbconvert(path, out_name, *extra):
    """The reference: nbconvert's ExecutePreprocessor (nbclient)."""
    r = subprocess.run([PYTHON, "-m", "nbconvert", "--to", "notebook", "--execute", *extra,
                        "--output", out_name, "--output-dir", str(path.parent), str(path)],
                       capture_output=True, text=True, timeout=300, cwd=path.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return load(path.parent / out_name)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def validate(path):
    """nbformat's own reader and schema validation (raises on failure)."""
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb


def text(v):
    return "".join(v) if isinstance(v, list) else v


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def kinds(outputs):
    """Output types with stream names and mime keys: what must match even for
    cells whose text is not deterministic (timings)."""
    out = []
    for o in outputs:
        t = o["output_type"]
        if t == "stream":
            out.append((t, o["name"]))
        elif t in ("display_data", "execute_result"):
            out.append((t, tuple(sorted(o["data"]))))
        else:
            out.append((t, o.get("ename")))
    return out


def normalized(outputs):
    outs = copy.deepcopy(outputs)
    s = json.dumps(outs, sort_keys=True)
    return json.loads(re.sub(r"0x[0-9a-f]{6,}", "0xADDR", s))


def parse_ts(s):
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s), s
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def work(tmp_path):
    """A private copy of tests/notebooks (the kernel runs in the notebook's directory)."""
    for p in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def write_nb(path, cells, **meta):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) if isinstance(c, str) else c
                                         for c in cells])
    nb.metadata.update(meta)
    nbformat.write(nb, str(path))
    return path


# ---------------------------------------------------------------- same results as nbconvert

@pytest.mark.parametrize("name", COMPARED)
def test_same_outputs_as_nbconvert(work, name):
    src = work / (name + ".ipynb")
    r = skylab(src, "-o", name + ".skylab.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    mine_path = work / (name + ".skylab.ipynb")
    validate(mine_path)
    mine = load(mine_path)
    ref = nbconvert(src, name + ".nbconvert.ipynb")

    assert mine["metadata"] == ref["metadata"]  # kernelspec and language_info from the kernel
    assert (mine["nbformat"], mine["nbformat_minor"]) == (ref["nbformat"], ref["nbformat_minor"])
    assert len(mine["cells"]) == len(ref["cells"])
    for i, (a, b) in enumerate(zip(mine["cells"], ref["cells"])):
        where = "%s cell %d: %r" % (name, i, text(b["source"])[:60])
        assert a["cell_type"] == b["cell_type"], where
        assert a["source"] == b["source"], where
        if b["cell_type"] != "code":
            continue
        assert a["execution_count"] == b["execution_count"], where
        assert kinds(a["outputs"]) == kinds(b["outputs"]), where
        if "nondeterministic" not in tags(b):
            assert normalized(a["outputs"]) == normalized(b["outputs"]), where
        # nbclient's per-cell timing metadata: same keys, sane order
        ea, eb = a["metadata"].get("execution"), b["metadata"].get("execution")
        assert (ea is None) == (eb is None), where
        if ea is not None:
            assert sorted(ea) == sorted(eb) == ["iopub.execute_input", "iopub.status.busy",
                                                "iopub.status.idle", "shell.execute_reply"], where
            t = {k: parse_ts(v) for k, v in ea.items()}
            assert t["iopub.status.busy"] <= t["iopub.execute_input"] <= t["iopub.status.idle"], where
            assert t["iopub.status.busy"] <= t["shell.execute_reply"], where


def test_written_like_nbformat(work):
    """1-space indent, split lines, sorted keys, final newline: the file is
    byte-identical to nbformat.writes of the same notebook."""
    r = skylab("display.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    out = work / "display.out.ipynb"  # the default name
    raw = out.read_text(encoding="utf-8")
    nb = nbformat.read(str(out), as_version=4)
    assert raw == nbformat.writes(nb) + "\n"
    assert '\n "cells": [\n  {\n' in raw
    assert not list(work.glob(".*tmp*"))  # the atomic write left no temporary


def test_v44_notebook_with_cell_ids_comes_out_valid_45(work):
    """A notebook labelled 4.4 whose cells carry ids (a newer Jupyter wrote
    them) is invalid as it stands; skylab run writes it as a valid 4.5, ids
    kept and missing ones added (nbformat's upgrade to 4.5)."""
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {},
          "cells": [{"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# T"},
                    {"cell_type": "code", "id": "calc", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": "print(6 * 7)"},
                    {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": "1 + 1"}]}
    src = work / "v44ids.ipynb"
    src.write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(nbformat.ValidationError):
        nbformat.validate(json.loads(src.read_text(encoding="utf-8")))  # invalid as saved
    r = skylab(src, "-o", "mine.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    raw = load(work / "mine.ipynb")
    nbformat.validate(raw)  # the file as written, not a repaired copy
    assert (raw["nbformat"], raw["nbformat_minor"]) == (4, 5)
    ids = [c.get("id") for c in raw["cells"]]
    assert ids[:2] == ["intro", "calc"] and re.fullmatch(r"[0-9a-f]{8}", ids[2] or ""), ids
    assert text(raw["cells"][1]["outputs"][0]["text"]) == "42\n"
    validate(work / "mine.ipynb")


def test_error_allowed_matches_nbconvert(work):
    src = work / "raises.ipynb"
    r = skylab(src, "--allow-errors", "-o", "mine.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    mine = load(work / "mine.ipynb")
    ref = nbconvert(src, "ref.ipynb", "--allow-errors")
    for a, b in zip(mine["cells"], ref["cells"]):
        assert a["execution_count"] == b["execution_count"]
        assert normalized(a["outputs"]) == normalized(b["outputs"])
    validate(work / "mine.ipynb")


# ---------------------------------------------------------------- errors

def test_cell_error_exit_1_with_traceback(work):
    r = skylab("raises.ipynb", cwd=work)
    assert r.returncode == 1, r.stderr
    assert "cell 2 raised ValueError: boom from the notebook" in r.stderr
    assert "Traceback" in r.stderr and "\x1b[" not in r.stderr  # plain text when not a terminal
    nb = validate(work / "raises.out.ipynb")
    c0, c1, c2 = nb.cells
    assert c0.outputs[0].text == "first\n"
    err = c1.outputs[-1]
    assert err.output_type == "error" and err.ename == "ValueError" and err.evalue == "boom from the notebook"
    assert any("boom from the notebook" in line for line in err.traceback)
    assert c2.outputs == [] and c2.execution_count is None  # not run
    assert "execution" not in c2.metadata


def test_allow_errors_runs_to_the_end(work):
    r = skylab("raises.ipynb", "--allow-errors", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "raises.out.ipynb")
    assert nb.cells[1].outputs[-1].output_type == "error"
    assert nb.cells[2].outputs[0].text == "after the error\n"


def test_raises_exception_tag_is_allowed(work):
    r = skylab("raises_allowed_tag.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "raises_allowed_tag.out.ipynb")
    assert nb.cells[0].outputs[0].ename == "ZeroDivisionError"
    assert nb.cells[1].outputs[0].text == "still running\n"


def test_kernel_dies_mid_run(work):
    t0 = time.monotonic()
    r = skylab("dies.ipynb", cwd=work)
    assert r.returncode == 1, r.stderr
    assert time.monotonic() - t0 < 30
    assert "the kernel died while running cell 2" in r.stderr
    nb = validate(work / "dies.out.ipynb")
    pid = int(nb.cells[0].outputs[0].text.split()[1])
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None
    assert not wait_gone([pid], timeout=5)


def test_per_cell_timeout_interrupts_and_fails(work):
    t0 = time.monotonic()
    r = skylab("sleeps.ipynb", "--timeout", "2", cwd=work)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert took < 30, took
    assert "cell 2 timed out after 2 s" in r.stderr
    nb = validate(work / "sleeps.out.ipynb")
    pid = int(nb.cells[0].outputs[0].text.split()[1])
    assert nb.cells[1].outputs[-1].ename == "KeyboardInterrupt"  # the interrupt reached the cell
    assert nb.cells[2].execution_count is None
    assert not wait_gone([pid], timeout=5)


@pytest.mark.parametrize("signo,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_interrupts_and_writes_partial_notebook(work, signo, code):
    p = subprocess.Popen([skylab_bin(), "run", "sleeps.ipynb"], cwd=work, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 60
    while "[1/3]" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([p.stderr], [], [], 1)
        if ready:
            line = p.stderr.readline()
            if not line:
                break
            seen += line
    assert "[1/3]" in seen, seen
    time.sleep(0.5)  # cell 2 is sleeping now
    p.send_signal(signo)
    try:
        rest = p.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    assert p.returncode == code, seen + rest
    nb = validate(work / "sleeps.out.ipynb")
    pid = int(nb.cells[0].outputs[0].text.split()[1])
    assert nb.cells[1].outputs[-1].ename == "KeyboardInterrupt"
    assert nb.cells[2].execution_count is None
    assert "cancelled during cell 2" in rest
    assert not wait_gone([pid], timeout=5)


# ---------------------------------------------------------------- bad input: exit 2

@pytest.mark.parametrize("content,message", [
    ("this is { not json", "not valid JSON (line 1"),
    ('{"hello": "world"}', "not a Jupyter notebook"),
    ('[1, 2, 3]', "not a Jupyter notebook"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "not a Jupyter notebook (no 'cells' list)"),
    (json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"},
                 "worksheets": [{"cells": [{"cell_type": "code", "input": "1", "language": "python",
                                            "outputs": []}], "metadata": {}}]}),
     "nbformat 3 notebooks are not supported"),
    ("", "not valid JSON"),
])
def test_unreadable_notebook_exit_2(work, content, message):
    (work / "bad.ipynb").write_text(content)
    r = skylab("bad.ipynb", cwd=work)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert "bad.ipynb" in r.stderr
    assert not (work / "bad.out.ipynb").exists()


def test_missing_file_exit_2(work):
    r = skylab("nope.ipynb", cwd=work)
    assert r.returncode == 2 and "nope.ipynb: No such file or directory" in r.stderr, r.stderr


def test_missing_kernel_exit_2(work):
    write_nb(work / "k.ipynb", ["1"], kernelspec={"name": "no-such-kernel", "display_name": "X",
                                                  "language": "python"})
    r = skylab("k.ipynb", cwd=work)
    assert r.returncode == 2, r.stderr
    assert "no kernel named 'no-such-kernel'" in r.stderr and "--kernel" in r.stderr and "python3" in r.stderr
    assert not (work / "k.out.ipynb").exists()
    r = skylab("k.ipynb", "--kernel", "python3", cwd=work)  # --kernel overrides the metadata
    assert r.returncode == 0, r.stderr
    r = skylab("raises.ipynb", "--kernel", "other", cwd=work)
    assert r.returncode == 2 and "no kernel named 'other'" in r.stderr


@pytest.mark.parametrize("args,message", [
    ([], "no notebook given"),
    (["a.ipynb", "b.ipynb"], "only one notebook"),
    (["raises.ipynb", "--bogus"], "unknown option '--bogus'"),
    (["raises.ipynb", "-p", "x"], "-p needs a NAME and a VALUE"),
    (["raises.ipynb", "-p", "1x", "2"], "not a Python identifier"),
    (["raises.ipynb", "--timeout", "soon"], "--timeout must be a number"),
    (["raises.ipynb", "-o"], "-o needs a value"),
    (["raises.ipynb", "--runtime", "gpu"], "no runtime type 'gpu'; configured: cpu"),
    (["raises.ipynb", "--user", "alice"], "--data-dir, --user and --config go with --runtime TYPE"),
    (["raises.ipynb", "--runtime", "cpu", "--user", "Not/A/User"], "is not a Skylab user name"),
    (["raises.ipynb", "--runtime", "cpu", "--config", "no-such.toml"], "no-such.toml"),
    (["raises.ipynb", "-o", "no/such/dir/out.ipynb"], "does not exist"),
])
def test_bad_usage_exit_2(work, args, message):
    r = skylab(*args, cwd=work)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr


def test_help(work):
    r = skylab("--help", cwd=work)
    assert r.returncode == 0 and "usage: skylab run" in r.stdout and "130" in r.stdout


# ---------------------------------------------------------------- parameters (papermill)

def pm_resolve(value):
    """papermill's CLI typing of -p values (_resolve_type), plus JSON lists and
    objects as `skylab run` documents it."""
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        pass
    if value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def pm_translate(val):
    """papermill's PythonTranslator.translate."""
    if val is None:
        return "None"
    if isinstance(val, str):
        return '"%s"' % val.encode("unicode_escape").decode("utf-8").replace('"', r'\"')
    if isinstance(val, bool):
        return str(val)
    if isinstance(val, int):
        return str(val)
    if isinstance(val, float):
        if math.isfinite(val):
            return str(val)
        if math.isnan(val):
            return "float('nan')"
        return "float('-inf')" if val < 0 else "float('inf')"
    if isinstance(val, dict):
        return "{%s}" % ", ".join("%s: %s" % (pm_translate(k), pm_translate(v)) for k, v in val.items())
    if isinstance(val, list):
        return "[%s]" % ", ".join(pm_translate(v) for v in val)
    raise TypeError(val)


def pm_codify(params):
    """papermill's PythonTranslator.codify (without black)."""
    return "# Parameters\n" + "".join("%s = %s\n" % (k, pm_translate(v)) for k, v in params.items())


PARAMS = [("alpha", "0.5"), ("n", "3"), ("name", 'He said "hi"\n\u00e9'), ("flag", "True"),
          ("items", '[1, "a", 2.5]'), ("cfg", '{"k": [true, null], "b": 1e-05}'), ("nothing", "None")]


def test_parameters_injected_after_tagged_cell(work):
    args = []
    for k, v in PARAMS:
        args += ["-p", k, v]
    r = skylab("params.ipynb", *args, cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "params.out.ipynb")
    assert len(nb.cells) == 4
    assert tags(nb.cells[1]) == ["parameters"]
    injected = nb.cells[2]
    assert tags(injected) == ["injected-parameters"]
    expected = {k: pm_resolve(v) for k, v in PARAMS}
    assert injected.source == pm_codify(expected)
    assert re.fullmatch(r"[0-9a-f]{8}", injected.id)
    assert injected.execution_count == 2
    assert nb.metadata.papermill.parameters == expected
    lines = nb.cells[3].outputs[0].text.splitlines()
    assert lines == [
        "alpha float 0.5",
        "n int 3",
        "name str 'He said \"hi\"\\n\u00e9'",
        "flag bool True",
        "items list [1, 'a', 2.5]",
        "cfg dict {'k': [True, None], 'b': 1e-05}",
        "nothing NoneType None",
    ]


def test_parameter_typing_like_papermill(work):
    raw = ["42", "-7", "1_000", "0.25", "1e3", "-inf", "nan", "True", "False", "None", "true",
           "hello world", "[1, 2", "{}", "007", " 5 "]
    args = []
    for i, v in enumerate(raw):
        args += ["-p", "v%d" % i, v]
    r = skylab("params_untagged.ipynb", *args, cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "params_untagged.out.ipynb")
    expected = {"v%d" % i: pm_resolve(v) for i, v in enumerate(raw)}
    assert nb.cells[0].source == pm_codify(expected)


def test_parameters_at_top_without_tagged_cell(work):
    r = skylab("params_untagged.ipynb", "-p", "alpha", "0.9", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "params_untagged.out.ipynb")
    assert [tags(c) for c in nb.cells] == [["injected-parameters"], [], []]
    assert nb.cells[0].source == "# Parameters\nalpha = 0.9\n"
    assert nb.cells[2].outputs[0].text == "0.1\n"  # the notebook's own assignment runs after (as papermill)


def test_parameters_replace_previous_injection(work):
    assert skylab("params.ipynb", "-p", "n", "1", cwd=work).returncode == 0
    r = skylab("params.out.ipynb", "-p", "n", "2", "-o", "again.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "again.ipynb")
    assert [tags(c) for c in nb.cells].count(["injected-parameters"]) == 1
    assert nb.cells[2].source == "# Parameters\nn = 2\n"


# ---------------------------------------------------------------- progress, output, environment

def test_progress_lines_when_not_a_terminal(work):
    r = skylab("raises.ipynb", "--allow-errors", cwd=work)
    lines = [l for l in r.stderr.splitlines() if l.startswith("[")]
    assert len(lines) == 3, r.stderr
    assert lines[0].startswith("[1/3] ok") and "print('first')" in lines[0]
    assert lines[1].startswith("[2/3] FAILED")
    assert "3 cells run in" in r.stderr and "wrote raises.out.ipynb" in r.stderr


def test_quiet(work):
    r = skylab("raises.ipynb", "--allow-errors", "--quiet", cwd=work)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = skylab("raises.ipynb", "-q", cwd=work)
    assert r.returncode == 1 and "boom from the notebook" in r.stderr  # errors still reported


def test_progress_bar_on_a_terminal(work):
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(work)
        os.execv(skylab_bin(), [skylab_bin(), "run", "raises.ipynb", "--allow-errors"])
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out
    s = out.decode(errors="replace")
    assert "\r\x1b[K[" in s and "3/3" in s and "[####" in s, s
    assert "print('first')" in s


def test_output_to_stdout(work):
    r = skylab("raises.ipynb", "--allow-errors", "-q", "-o", "-", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = nbformat.reads(r.stdout, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[2].outputs[0].text == "after the error\n"
    assert not (work / "raises.out.ipynb").exists()


def test_kernel_runs_in_notebook_directory_and_default_kernel(work):
    sub = work / "sub dir"
    sub.mkdir()
    write_nb(sub / "cwd.ipynb", ["import os\nprint(os.getcwd())"])  # no kernelspec metadata
    r = skylab(sub / "cwd.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(sub / "cwd.out.ipynb")
    assert nb.cells[0].outputs[0].text.strip() == str(sub)
    assert nb.metadata.language_info.name == "python"


def test_skip_execution_tag_and_blank_cells(work):
    skip = nbformat.v4.new_code_cell("print('skipped')")
    skip.metadata.tags = ["skip-execution"]
    write_nb(work / "skip.ipynb", ["print(1)", skip, "   \n", "print(2)"])
    r = skylab("skip.ipynb", cwd=work)
    assert r.returncode == 0, r.stderr
    nb = validate(work / "skip.out.ipynb")
    assert [c.execution_count for c in nb.cells] == [1, None, None, 2]
    assert nb.cells[1].outputs == []

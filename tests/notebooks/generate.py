#!/usr/bin/python3
"""Writes the notebooks that tests/integration/test_run.py executes.

Run from anywhere with Debian's python (it has nbformat):
    /usr/bin/python3 tests/notebooks/generate.py
Cells tagged `nondeterministic` produce text that differs between runs
(timings); the tests compare only their output types there.
"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def code(src, *tags):
    c = new_code_cell(src)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(name, cells, kernelspec=KERNELSPEC):
    nb = new_notebook(cells=cells)
    if kernelspec:
        nb.metadata.kernelspec = kernelspec
    # Stable cell ids so the files do not change on every regeneration.
    for i, c in enumerate(nb.cells):
        c.id = "%s-%d" % (name[:20], i)
    nbformat.validate(nb)
    with open(os.path.join(HERE, name + ".ipynb"), "w") as f:
        nbformat.write(nb, f)


write("numpy_pandas", [
    new_markdown_cell("# numpy and pandas\nArrays, frames, printing, rich reprs."),
    code("import numpy as np\nimport pandas as pd\nnp.random.seed(0)\nprint(np.__name__, pd.__name__)"),
    code("a = np.arange(12).reshape(3, 4)\na"),
    code("print(a.sum(axis=0))\nprint(a.mean())\na.T @ a"),
    code("df = pd.DataFrame({'city': ['Oslo', 'Lima', 'Oslo', 'Pune'],\n"
         "                   'temp': [3.5, 18.25, -1.0, 31.0],\n"
         "                   'rain': [True, False, True, False]})\ndf"),
    code("df.groupby('city')['temp'].agg(['mean', 'count'])"),
    code("print(df.describe())\ndf.dtypes"),
    code("s = pd.Series(np.random.randn(5).round(3), index=list('abcde'))\ns"),
    code("for i in range(3):\n    print('line', i)\nimport sys\nprint('to stderr', file=sys.stderr)\nprint('back to stdout')"),
    code("x = 40 + 2"),
    code("x"),
    code("display(df.head(2))\nprint('after display')\n'last value'"),
])

write("plots", [
    code("%matplotlib inline\nimport matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
         "import matplotlib.pyplot as plt\nimport numpy as np"),
    code("x = np.linspace(0, 2 * np.pi, 50)\nplt.plot(x, np.sin(x))\nplt.title('sin')\nplt.show()"),
    code("fig, axes = plt.subplots(1, 2, figsize=(6, 3))\naxes[0].bar(['a', 'b'], [1, 2])\n"
         "axes[1].scatter([1, 2, 3], [3, 1, 2])\nprint('two axes')"),
    code("plt.figure()\nplt.hist(np.arange(100) % 7, bins=7)"),
    code("from IPython.display import SVG\nSVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
         "<rect width=\"10\" height=\"10\"/></svg>')"),
])

write("magics", [
    code("%env SKYLAB_TEST_VAR=hello"),
    code("%env SKYLAB_TEST_VAR"),
    code("import os\nos.environ['SKYLAB_TEST_VAR']"),
    code("!echo shell says $SKYLAB_TEST_VAR"),
    code("!printf 'one\\ntwo\\n'"),
    code("files = !printf 'x\\ny\\n'\nfiles"),
    code("%timeit -n1 -r1 sum(range(1000))", "nondeterministic"),
    code("%%capture captured\nprint('captured text')\nimport sys\nprint('captured err', file=sys.stderr)"),
    code("print(repr(captured.stdout), repr(captured.stderr))"),
    code("%%bash\necho from bash\necho bash err >&2"),
    code("%%writefile magic_written.txt\nhello file"),
    code("%cat magic_written.txt"),
    code("!rm -f magic_written.txt\n%who_ls"),
    code("%%time\ntotal = sum(range(10))", "nondeterministic"),
    code("_i1, len(In) > 3"),
])

write("display", [
    code("from IPython.display import display, HTML, Markdown, JSON, clear_output, update_display\nimport time, sys"),
    code("h = display(HTML('<b>v1</b>'), display_id='status')\nprint('shown')"),
    code("update_display(HTML('<b>v2</b>'), display_id='status')"),
    code("display(Markdown('**bold**'), JSON({'a': [1, 2]}))"),
    code("for i in range(5):\n    clear_output(wait=True)\n    print('step', i)"),
    code("print('before'); clear_output(); print('after')"),
    code("for p in (10, 50, 100):\n    sys.stdout.write('\\rprogress %d%%' % p)\n    sys.stdout.flush()\nprint()"),
    code("print('a', end=''); sys.stdout.flush(); print('b', file=sys.stderr); print('c')"),
    code("class Both:\n    def _repr_html_(self):\n        return '<i>both</i>'\n    def __repr__(self):\n        return 'Both()'\nBoth()"),
    code("d = display('first', display_id=True)\nd.update('second')\nd2 = display('third', display_id=d.display_id)"),
    code("print('\\u00e9t\\u00e9 \\u2603 \\U0001f600')"),
    code("print('x' * 3000)"),
    code("", ),
    code("# only a comment"),
])

write("raises", [
    code("print('first')"),
    code("def f():\n    raise ValueError('boom from the notebook')\nf()"),
    code("print('after the error')"),
])

write("raises_allowed_tag", [
    code("1/0", "raises-exception"),
    code("print('still running')"),
])

write("params", [
    new_markdown_cell("A parameterised notebook (papermill convention)."),
    code("alpha = 0.1\nn = 1\nname = 'default'\nflag = False\nitems = []\ncfg = {}\nnothing = 'set'", "parameters"),
    code("for k in ['alpha', 'n', 'name', 'flag', 'items', 'cfg', 'nothing']:\n"
         "    v = globals()[k]\n    print(k, type(v).__name__, repr(v))"),
])

write("params_untagged", [
    code("alpha = 0.1"),
    code("print(alpha)"),
])

write("dies", [
    code("import os\nprint('pid', os.getpid())"),
    code("os._exit(1)"),
    code("print('never')"),
])

write("sleeps", [
    code("import os\nprint('pid', os.getpid(), flush=True)"),
    code("import time\ntime.sleep(60)"),
    code("print('never')"),
])

"""Colab's paths in a real runtime (issue 15): /content/drive/MyDrive is the
Drive, as after Colab's drive.mount('/content/drive'), and Skylab's
/content/drive keeps working; jobs run in the notebook's folder by default,
or in the folder their `cwd` names (papermill's --cwd)."""
import os

import pytest

from conftest import SERVER_KIND, needs_root, needs_sandbox
from test_accounts import add_user, new_token, token_session, uname
from test_jobs import contents, notebook, put, submit, wait_job
from test_runtime_files import Owner

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes")


@pytest.fixture(scope="module")
def owner(server):
    if needs_sandbox.args[0] or needs_root.args[0]:
        pytest.skip("needs bubblewrap and root")
    return Owner(server, "cp")


def test_mydrive_is_the_drive(server, owner):
    s = owner.s
    assert s.put(server.url("/api/contents/colab-data"), json={"type": "directory"}, timeout=30).status_code == 201
    r = s.put(server.url("/api/contents/colab-data/x.csv"),
              json={"type": "file", "format": "text", "content": "a,b\n1,2\n"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    # Without drive.mount() (a runtime has its Drive from the start) and after it.
    out = owner.run("print(open('/content/drive/MyDrive/colab-data/x.csv').read(), end='')")
    assert out == "a,b\n1,2\n"
    out = owner.run("from google.colab import drive\ndrive.mount('/content/drive')\n"
                    "import pandas as pd\nprint(pd.read_csv('/content/drive/MyDrive/colab-data/x.csv').b.sum())\n"
                    "print(open('/content/drive/colab-data/x.csv').read().count(','))")
    assert out == "Mounted at /content/drive\n2\n2\n"
    # Written through Colab's path: the same file in the Drive.
    owner.run("open('/content/drive/MyDrive/colab-data/y.txt', 'w').write('via MyDrive')")
    assert contents(server, s, "colab-data/y.txt") == "via MyDrive"
    assert owner.run("import os\nprint(os.path.samefile('/content/drive/MyDrive', '/content/drive'))") == "True\n"
    # The Drive's own listing shows no MyDrive entry; the server never follows the link.
    names = [e["name"] for e in contents(server, s, "")]
    assert "colab-data" in names and "MyDrive" not in names
    assert s.get(server.url("/api/contents/MyDrive/colab-data/x.csv"), timeout=30).status_code == 404
    link = os.path.join(server.data_dir, "drive", owner.name, "MyDrive")
    assert os.path.islink(link) and os.readlink(link) == "."


def test_a_users_own_mydrive_folder_wins_until_moved(server):
    if needs_sandbox.args[0] or needs_root.args[0]:
        pytest.skip("needs bubblewrap and root")
    name = uname("cq")
    add_user(server, name, "password-" + name)
    s = token_session(new_token(server, name))
    assert s.put(server.url("/api/contents/MyDrive"), json={"type": "directory"}, timeout=30).status_code == 201
    r = s.put(server.url("/api/contents/MyDrive/z.txt"), json={"type": "file", "format": "text", "content": "mine"},
              timeout=30)
    assert r.status_code in (200, 201), r.text
    r = s.post(server.url("/api/kernels"), json={}, timeout=60)
    assert r.status_code == 201, r.text
    server.kernels.append(r.json()["id"])
    c = server.connect(r.json()["id"])
    c.nudge()
    res = c.execute("from google.colab import drive\ndrive.mount('/content/drive')\n"
                    "import os\nprint(open('/content/drive/MyDrive/z.txt').read(), os.path.islink('/content/drive/MyDrive'))",
                    timeout=60)
    assert res.status == "ok", res.error
    assert res.stdout == "Mounted at /content/drive\nmine False\n"
    # Moved away, the folder no longer hides the Drive: the next mount links it.
    r = s.patch(server.url("/api/contents/MyDrive"), json={"path": "Old"}, timeout=30)
    assert r.status_code == 200, r.text
    res = c.execute("drive.mount('/content/drive')\nprint(open('/content/drive/MyDrive/Old/z.txt').read())", timeout=60)
    assert res.status == "ok", res.error
    assert res.stdout == "Mounted at /content/drive\nmine\n"


CWD_PROBE = "import os\nprint(os.getcwd())\nprint(open('data/x.csv').read() if os.path.exists('data/x.csv') else '-')"


def job_output(server, s, job):
    out = contents(server, s, job["output_path"])
    return "".join(o.get("text", "") for c in out["cells"] for o in c["outputs"])


def test_job_runs_in_the_notebooks_folder(server, owner):
    s = owner.s
    s.put(server.url("/api/contents/course-cwd"), json={"type": "directory"}, timeout=30)
    s.put(server.url("/api/contents/course-cwd/data"), json={"type": "directory"}, timeout=30)
    r = s.put(server.url("/api/contents/course-cwd/data/x.csv"),
              json={"type": "file", "format": "text", "content": "beside the notebook"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    put(server, s, "course-cwd/read.ipynb", notebook(CWD_PROBE))
    job = submit(server, s, path="course-cwd/read.ipynb")
    assert job["cwd"] == "/content/drive/course-cwd"
    job = wait_job(server, s, job["id"])
    assert job["state"] == "succeeded", job
    assert job_output(server, s, job) == "/content/drive/course-cwd\nbeside the notebook\n"

    # papermill's --cwd: Colab's /content, or another Drive folder (relative paths are the Drive's).
    job = wait_job(server, s, submit(server, s, path="course-cwd/read.ipynb", cwd="/content",
                                     output_path="course-cwd/content.out.ipynb")["id"])
    assert job["state"] == "succeeded" and job["cwd"] == "/content", job
    assert job_output(server, s, job) == "/content\n-\n"
    job = wait_job(server, s, submit(server, s, path="course-cwd/read.ipynb", cwd="course-cwd/data",
                                     output_path="course-cwd/data.out.ipynb")["id"])
    assert job["state"] == "succeeded" and job["cwd"] == "/content/drive/course-cwd/data", job
    assert job_output(server, s, job).startswith("/content/drive/course-cwd/data\n")


def test_job_with_a_missing_cwd_fails_with_a_reason(server, owner):
    s = owner.s
    put(server, s, "cwd-missing.ipynb", notebook("print('never')"))
    job = wait_job(server, s, submit(server, s, path="cwd-missing.ipynb", cwd="no/such/folder")["id"])
    assert job["state"] == "failed", job
    assert "/content/drive/no/such/folder" in job["message"] and "FileNotFoundError" in job["message"], job


@pytest.mark.parametrize("cwd,message", [
    (5, "'cwd' must be a string"),
    ("", "'cwd' must be a folder path"),
    ("x" * 1025, "'cwd' must be a folder path"),
    ("a\nb", "control characters"),
    ("/content\x00", "control characters"),
])
def test_bad_cwd_is_refused(server, owner, cwd, message):
    put(server, owner.s, "cwd-bad.ipynb", notebook("1"))
    r = owner.s.post(server.url("/api/skylab/jobs"), json={"path": "cwd-bad.ipynb", "cwd": cwd}, timeout=30)
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_cwd_is_a_path_never_code(server, owner):
    # Quotes, a backslash and Python in the folder name stay a folder name.
    s = owner.s
    evil = "/content/x'\"\\); import os; os.mkdir('/content/drive/pwned') #"
    put(server, s, "cwd-evil.ipynb", notebook("print('never')"))
    job = wait_job(server, s, submit(server, s, path="cwd-evil.ipynb", cwd=evil)["id"])
    assert job["state"] == "failed" and job["cwd"] == evil, job
    assert "FileNotFoundError" in job["message"], job
    names = [e["name"] for e in contents(server, s, "")]
    assert "pwned" not in names

"""scripts/lab.sh: JupyterLab with the project's kernel, driven headless.

Starts ``scripts/lab.sh --no-browser`` (without its install step, and with the
kernel registered into a temporary ``JUPYTER_DATA_DIR``, so the user's own Jupyter
set-up is left alone), checks that the server lists the registered kernel and that
its Python is this project's, then starts that kernel through the server's REST API
and runs chapter 1's first code cells over the kernel's websocket, as JupyterLab
does, comparing their text outputs with the stored ones.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "01_gradient_of_an_expectation.ipynb"
N_CELLS = 3  # chapter 1's first code cells
KERNEL = "reparam-book"
TIMEOUT_S = 180

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, data: dict | None = None):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"},
                                 data=None if data is None else json.dumps(data).encode(),
                                 method="GET" if data is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("jupyterlab")
    websocket = pytest.importorskip("websocket")  # websocket-client, a jupyter_server need
    data_dir = tmp_path_factory.mktemp("jupyter-data")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, LAB_SKIP_INSTALL="1", JUPYTER_DATA_DIR=str(data_dir),
               JUPYTER_RUNTIME_DIR=str(data_dir / "runtime"))
    env.pop("COMPANION_DEVICE", None)
    log = (data_dir / "lab.log").open("w")
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "lab.sh"), "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         "--ServerApp.open_browser=False", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                _get(f"{base}/api/status", token)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n"
                                + (data_dir / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, data_dir, websocket
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_kernel_is_registered_with_the_projects_python(server):
    base, token, data_dir, _ = server
    specs = _get(f"{base}/api/kernelspecs", token)
    assert KERNEL in specs["kernelspecs"], sorted(specs["kernelspecs"])
    assert specs["default"] == KERNEL
    spec = json.loads((data_dir / "kernels" / KERNEL / "kernel.json").read_text())
    python = pathlib.Path(spec["argv"][0])
    assert python.resolve() == (ROOT / ".venv" / "bin" / "python").resolve(), spec["argv"]
    assert spec["env"]["PYTHONPATH"] == str(ROOT)


def _run(ws, code: str) -> list[dict]:
    """Execute ``code``; return its outputs as nbformat-like dicts."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    outputs: list[dict] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id or msg["channel"] != "iopub":
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outputs
        if kind == "stream":
            outputs.append({"output_type": "stream", "text": content["text"]})
        elif kind in ("execute_result", "display_data"):
            outputs.append({"output_type": kind, "data": content["data"]})
        elif kind == "error":
            outputs.append({"output_type": "error", "ename": content["ename"],
                            "evalue": content["evalue"]})
    pytest.fail(f"no reply within {TIMEOUT_S} s to:\n{code}")


def _text(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        if o["output_type"] == "stream":
            parts.append("".join(o["text"]))
        elif "data" in o and "text/plain" in o["data"]:
            parts.append("".join(o["data"]["text/plain"]))
    return "".join(parts)


def test_a_chapter_runs_through_the_server_with_the_registered_kernel(server):
    base, token, _, websocket = server
    kernel = _get(f"{base}/api/kernels", token, data={"name": KERNEL})
    assert kernel["name"] == KERNEL
    ws = websocket.create_connection(
        f"ws://{base.removeprefix('http://')}/api/kernels/{kernel['id']}/channels",
        header=[f"Authorization: token {token}"], timeout=TIMEOUT_S)
    try:
        where = _run(ws, "import sys, companion; print(sys.executable); "
                         "print(companion.__file__)")
        assert not [o for o in where if o["output_type"] == "error"], where
        executable, module = _text(where).split()
        assert pathlib.Path(executable).resolve() == \
            (ROOT / ".venv" / "bin" / "python").resolve(), executable
        assert pathlib.Path(module).resolve().is_relative_to(ROOT), module
        cells = [c for c in json.loads(CHAPTER.read_text())["cells"]
                 if c["cell_type"] == "code"][:N_CELLS]
        for i, cell in enumerate(cells):
            outputs = _run(ws, "".join(cell["source"]))
            errors = [o for o in outputs if o["output_type"] == "error"]
            assert not errors, f"cell {i}: {errors}"
            assert _text(outputs) == _text(cell["outputs"]), f"cell {i} printed otherwise"
    finally:
        ws.close()

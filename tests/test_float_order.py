"""The ``float-order`` cell tag: trained numbers masked on a GPU only, exact on the CPU.

The mechanism lives in the repository's root ``conftest.py`` (see its docstring).
These tests run nbval, in a subprocess, on a two-cell notebook whose stored output
differs from what its code prints only in the last two digits of a number, as a
GPU's result for a trained number may. ``COMPANION_DEVICE=cuda`` in the
subprocess's environment makes the root conftest behave as on a GPU (the tiny
notebook itself uses no torch, so no GPU is needed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "text, masked",
    [
        ("loss 0.1234", "loss 0.12##"),
        ("elbo -97.53 (seed 3)", "elbo -97.## (seed 3)"),
        ("3.25e-04 and 1.5", "3.##e-04 and 1.##"),
        ("epoch 10 of 200, 7 seeds", "epoch 10 of 200, 7 seeds"),
        ("[0.5000, 0.2500]", "[0.50##, 0.25##]"),
    ],
)
def test_mask_float_digits(text, masked):
    assert _root_conftest().mask_float_digits(text) == masked


def _notebook(path: pathlib.Path, stored: str, printed: str, tags: list[str]) -> None:
    """A notebook whose one code cell prints ``printed`` but has ``stored`` stored."""
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": 1, "id": "c1",
             "metadata": {"tags": tags},
             "outputs": [{"name": "stdout", "output_type": "stream", "text": [stored + "\n"]},
                         {"output_type": "display_data", "metadata": {},
                          "data": {"application/papermill.record/text/plain": stored}}],
             "source": ["from IPython.display import display\n",
                        f"print({printed!r})\n",
                        f"display({{'application/papermill.record/text/plain': "
                        f"{printed!r}}}, raw=True)"]},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def _nbval(tmp_path: pathlib.Path, device: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COMPANION_DEVICE=device, PYTHONPATH=str(ROOT))
    # -p conftest loads the repository's root conftest.py as a plugin (PYTHONPATH),
    # with the temporary folder as the root directory.
    cmd = [sys.executable, "-m", "pytest", "-p", "conftest", "--nbval",
           "--nbval-current-env", "-p", "no:cacheprovider", "-q",
           "--rootdir", str(tmp_path), str(tmp_path / "t.ipynb")]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.mark.parametrize(
    "device, tags, stored, printed, passes",
    [
        # On the CPU every digit counts, tagged or not.
        ("cpu", ["float-order"], "loss 0.123456", "loss 0.123499", False),
        ("cpu", ["float-order"], "loss 0.123456", "loss 0.123456", True),
        # On a GPU a tagged cell may differ in its last two digits...
        ("cuda", ["float-order"], "loss 0.123456", "loss 0.123499", True),
        # ... but not in the third-last,
        ("cuda", ["float-order"], "loss 0.123456", "loss 0.123956", False),
        # and an untagged cell is compared exactly there too,
        ("cuda", [], "loss 0.123456", "loss 0.123499", False),
        # and the old printed marker no longer buys a tolerance.
        ("cuda", [], "loss 0.123456 (float-order)", "loss 0.123499 (float-order)", False),
    ],
)
def test_float_order_tag_under_nbval(tmp_path, device, tags, stored, printed, passes):
    _notebook(tmp_path / "t.ipynb", stored, printed, tags)
    proc = _nbval(tmp_path, device)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == passes, out[-3000:]
    if passes:
        assert "1 passed" in out, out[-3000:]

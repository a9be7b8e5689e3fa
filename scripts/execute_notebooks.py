#!/usr/bin/env python
"""Re-execute the book's notebooks in place, each top to bottom in a fresh kernel.

    .venv/bin/python scripts/execute_notebooks.py            # every notebook under book/
    .venv/bin/python scripts/execute_notebooks.py book/03_*.ipynb

Runs on the CPU (``COMPANION_DEVICE`` is removed from the kernel's environment), so
the stored outputs are the CPU reference that nbval compares against on any
device. Stops at the first cell error, with the same per-cell timeout as the book's
configuration. Prints each notebook's wall-clock time against its budget.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 120  # matches execute.timeout in _config.yml
BUDGET_S = {"09_vae.ipynb": 90, "07_unbiased_discrete.ipynb": 90, "10_beyond_the_elbo.ipynb": 90}
DEFAULT_BUDGET_S = 30


def execute(path: pathlib.Path) -> float:
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.pop("COMPANION_DEVICE", None)
    env["PYTHONHASHSEED"] = "0"
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=False,
        record_timing=False,
    )
    # nbclient starts the kernel with this process's environment.
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        start = time.perf_counter()
        client.execute()
        elapsed = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(old)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    over = []
    for path in paths:
        elapsed = execute(path)
        budget = BUDGET_S.get(path.name, DEFAULT_BUDGET_S)
        flag = "ok" if elapsed <= budget else "OVER BUDGET"
        print(f"{path.name:40s} {elapsed:6.1f} s   (budget {budget} s)  {flag}", flush=True)
        if elapsed > budget:
            over.append(path.name)
    if over:
        print("over budget: " + ", ".join(over), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

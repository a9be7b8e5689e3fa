#!/usr/bin/env bash
# Open the book's chapters in JupyterLab, with this project's environment as the kernel.
#
#   scripts/lab.sh                           # install, register the kernel, open book/
#   COMPANION_DEVICE=cuda scripts/lab.sh     # the same, the notebooks on the GPU
#   scripts/lab.sh --no-browser --port=8890  # extra arguments go to `jupyter lab`
#
# 1. scripts/install.sh installs the exact pins of requirements.txt into .venv
#    (JupyterLab included); set LAB_SKIP_INSTALL=1 to skip it.
# 2. It registers .venv's Python as the Jupyter kernel "reparam-book" for this user
#    (`python -m ipykernel install --user`: ~/.local/share/jupyter/kernels, or
#    $JUPYTER_DATA_DIR), with PYTHONPATH set to this checkout, so any Jupyter
#    front end (VS Code, another JupyterLab) can run the chapters with the
#    project's packages. Safe to re-run: the registration is overwritten.
# 3. It starts .venv's JupyterLab in book/, where new notebooks get that kernel.
#    The chapters' own kernel, "python3", is the same .venv Python there.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
KERNEL_NAME="${KERNEL_NAME:-reparam-book}"

[ "${LAB_SKIP_INSTALL:-0}" = 1 ] || scripts/install.sh
.venv/bin/python -m ipykernel install --user --name "$KERNEL_NAME" \
  --display-name "Python (reparam-book)" --env PYTHONPATH "$root" >/dev/null
echo "Registered the Jupyter kernel '$KERNEL_NAME' ($root/.venv/bin/python)."
extra=()
[ "$(id -u)" -ne 0 ] || extra+=(--allow-root)   # CI containers run as root
exec .venv/bin/jupyter lab "${extra[@]}" --ServerApp.root_dir="$root/book" \
  --MappingKernelManager.default_kernel_name="$KERNEL_NAME" "$@"

#!/usr/bin/env bash
# Set up everything detcore needs in .venv/ at the repository root; safe to run again.
#   - PyTorch: `pip install torch==2.13.0` when no torch is installed (never a bare `torch`, which
#     would resolve to a CUDA build of several GB);
#   - detcore itself (editable) with its test tools;
#   - detcore-native (C++/CUDA ops), built against the installed torch with --no-build-isolation;
#   - every plugin under plugins/ and the example third-party plugin (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
pip_install() { "$VPY" -m pip install -q --disable-pip-version-check "$@"; }

if ! "$VPY" -c "import torch" 2>/dev/null; then
    echo "bootstrap: installing torch==2.13.0"
    pip_install torch==2.13.0
fi
pip_install setuptools wheel
pip_install -e ".[test,plot,track,deploy]"

if [ -f native/setup.py ] || [ -f native/pyproject.toml ]; then
    if ! "$VPY" -c "import detcore_native" 2>/dev/null || [ "${DETCORE_REBUILD_NATIVE:-0}" = 1 ]; then
        echo "bootstrap: building detcore-native (C++ ops; a few minutes on 2 cores)"
        MAX_JOBS=${MAX_JOBS:-2} pip_install --no-build-isolation ./native
    fi
fi

plugins=()
for dir in plugins/*/ examples/third_party_plugin/; do
    [ -f "$dir/pyproject.toml" ] && plugins+=(-e "$dir")
done
if [ ${#plugins[@]} -gt 0 ]; then
    pip_install --no-build-isolation --no-deps "${plugins[@]}"
fi
echo "bootstrap: ready ($("$VPY" -c 'import torch, detcore; print("detcore", detcore.__version__, "torch", torch.__version__)'))"

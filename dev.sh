#!/usr/bin/env bash
# One entry point for set-up and checks.
#   ./dev.sh demo   create/refresh .venv, install attnkit, run the embedded demo
#   ./dev.sh test   create/reuse .venv, then ruff, mypy and the test suite
# Extra arguments after the subcommand are passed on (to `attnkit demo` or to pytest).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

setup_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.attnkit-installed"
    local want
    want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # torch first and pinned: an unpinned resolve would pull a CUDA build.
        "$VENV/bin/python" -m pip install --quiet -c constraints.txt "torch==2.13.0"
        "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
        echo "$want" > "$stamp"
    fi
}

cmd=${1:-demo}
shift || true
case "$cmd" in
    demo)
        setup_env
        if "$VENV/bin/attnkit" demo --help >/dev/null 2>&1; then
            exec "$VENV/bin/attnkit" demo "$@"
        else
            exec "$VENV/bin/attnkit" example "$@"
        fi
        ;;
    test)
        setup_env
        export ATTNKIT_DATA=${ATTNKIT_DATA:-$ROOT/../shared/datasets}
        "$VENV/bin/ruff" check src tests benchmarks
        "$VENV/bin/ruff" format --check src tests benchmarks
        "$VENV/bin/mypy"
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo|test [args...]" >&2
        exit 2
        ;;
esac

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

# Browser tests drive Debian's Chromium with Playwright; a browser is never downloaded by a test tool. The figure
# tests need a CJK-capable font (Debian's fonts-noto-cjk) to check that Chinese text is drawn, not boxes.
# Installs only what is missing, quietly; does nothing when both are there.
has_cjk_font() {
    if command -v fc-list >/dev/null; then
        [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]
    else
        dpkg -s fonts-noto-cjk >/dev/null 2>&1
    fi
}

ensure_chromium() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
    has_cjk_font || missing+=(fonts-noto-cjk)
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then
            sudo="sudo"
        elif [ -x /usr/bin/chromium ]; then
            echo "dev.sh: no CJK font; the CJK figure tests are skipped (apt-get install fonts-noto-cjk)" >&2
            return
        else
            echo "dev.sh: the browser tests need Debian's chromium; run: apt-get install ${missing[*]}" >&2
            exit 1
        fi
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
        ensure_chromium
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

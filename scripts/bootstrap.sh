#!/usr/bin/env bash
# Installs what the project needs on a Debian machine, idempotently:
#   - system packages (libzbar0 for pyzbar, mosquitto for the broker, nats-server for the clustered engine,
#     chromium for the browser tests and the demo's wallet phone, fonts-noto-cjk so that pages show Chinese) with
#     apt-get when missing;
#   - a local virtual environment in .venv with the project and its dev tools.
# The venv is rebuilt only when pyproject.toml changes (a hash stamp records the last install).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_apt=()
# grep without -q: with pipefail, a grep that stops reading early makes the lister die of SIGPIPE, which reads as
# "not found" and reinstalls the package on every run.
ldconfig -p 2>/dev/null | grep 'libzbar\.so\.0' >/dev/null || need_apt+=(libzbar0)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# the clustered engine of tests/test_broker_cluster.py (three nodes on free ports; never the system's own service)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
fc-list 2>/dev/null | grep -i 'Noto Sans CJK' >/dev/null || need_apt+=(fonts-noto-cjk)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${need_apt[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq >&2
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "bootstrap: Python 3.11 or newer is required (found: $("$python_bin" --version 2>&1))" >&2
    exit 1
fi

stamp=".venv/.citypass-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: preparing .venv (this takes a minute the first time)" >&2
    [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
    log=".venv/pip-install.log"
    if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[dev]'; } >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "bootstrap: pip install failed (full log: $log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi

# promtool (tests/test_deploy.py checks the alert rules in deploy/ with it): the binary from Debian's `prometheus`
# package, extracted into the venv — the package itself is not installed, so no Prometheus server runs here.
if [ ! -x .venv/bin/promtool ] && ! command -v promtool >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    if (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"; then
        install -m 755 "$tmp/x/usr/bin/promtool" .venv/bin/promtool
        echo "bootstrap: promtool from Debian's prometheus package in .venv/bin" >&2
    else
        echo "bootstrap: could not fetch promtool (apt-get download prometheus); tests/test_deploy.py will say so" >&2
    fi
    rm -rf "$tmp"
fi

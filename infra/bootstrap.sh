#!/usr/bin/env bash
# Installs what llm-router needs on a fresh Debian machine, idempotently:
# redis-server, Java 17 and Maven, npm, Chromium with its driver (the
# dashboard's browser test) and promtool (the `prometheus` package: the alert
# rules' tests) from Debian (only those missing), then a Python
# virtualenv in .venv with llm-router and its test extras, and the dashboard's
# chart library from the npm registry (infra/web_assets.sh).
# Kafka's jars are resolved later by `llmrouter infra up` (Maven Central).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v promtool >/dev/null || promtool_missing=1
if ((${#missing[@]})) || [ -n "${promtool_missing:-}" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  # another apt run on the machine may hold the lock for a while: wait for it
  "${apt[@]}" update -qq
fi
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]} from Debian"
  "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null
fi
if [ -n "${promtool_missing:-}" ]; then
  # Only promtool is wanted, but it comes in the server's package, whose install starts a Prometheus on :9090
  # where an init system runs (systemd or sysvinit) and fails when that start fails. Debian's way to stop a
  # package starting its daemon is a policy-rc.d that says no (exit 101): one for this install only, unless the
  # machine has its own (a container's usually refuses everything already). Without recommends (node-exporter
  # would be a second server), and kept from starting at boot.
  echo "bootstrap: installing prometheus (for promtool) from Debian"
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    own_policy=1
    trap '$sudo rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
  fi
  "${apt[@]}" install -y -qq --no-install-recommends prometheus >/dev/null
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    $sudo /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    $sudo update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  if [ -n "${own_policy:-}" ]; then
    $sudo rm -f "$policy"
    trap - EXIT
  fi
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "bootstrap: llm-router needs Python 3.11 or newer ($python is older)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
echo "bootstrap: installing llm-router into .venv"
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
bash infra/web_assets.sh

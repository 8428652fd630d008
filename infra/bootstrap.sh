#!/usr/bin/env bash
# Installs what llm-router needs on a fresh Debian machine, idempotently:
# redis-server, Java 17 and Maven, npm, and Chromium with its driver (the
# dashboard's browser test) from Debian (only those missing), then a Python
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
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bootstrap: installing ${missing[*]} from Debian"
  # another apt run on the machine may hold the lock for a while: wait for it
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "bootstrap: llm-router needs Python 3.11 or newer ($python is older)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
echo "bootstrap: installing llm-router into .venv"
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
bash infra/web_assets.sh

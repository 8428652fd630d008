#!/usr/bin/env bash
# The dashboard's front-end libraries: `npm ci` of web/package-lock.json into
# web/node_modules (never committed), from the npm registry. Run by
# infra/bootstrap.sh; again only when the lock file changed since the last
# install, so it is safe to run every time.
set -euo pipefail
cd "$(dirname "$0")/../web"

stamp=node_modules/.llmrouter-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: installing the dashboard's front-end libraries (npm ci in web/)"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
echo "$want" > "$stamp"

#!/bin/sh
# One command from a fresh clone to a running KMS on the embedded quick-start profile: the TEE
# simulator (mock Intel PKI, trusted explicitly), the auth-simple policy sidecar with a generated
# policy, self-authorization on, all data under ./data, HTTPS on port 8000.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-system.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci
fi
npm run build
exec node dist/src/cli.js serve --quickstart "$@"

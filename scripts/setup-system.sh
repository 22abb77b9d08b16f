#!/bin/sh
# Installs the Debian packages dstack-kms-ts needs to build and run, and with --test also what the
# tests need. Idempotent; called by `npm run quickstart` and `npm run test:all` (and thus by
# .ci/run). libsecp256k1-dev constant-time secp256k1 for the native addon
# (docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves)
#   python3           used by tests that need a unix-datagram receiver (sd_notify)
#   g++ make          node-gyp builds of the native addon and better-sqlite3
#   chromium          (--test) browser test of the onboarding page, driven by playwright-core
#   haproxy           (--test) the TCP load balancer in front of the replica-set test
#   wrk               (--bench) the HTTP load generator of `npm run bench`
#   libssl-dev        (--bench) OpenSSL 3 for bench/c/cold_client.c, the load client of the cold
#                     GetAppKey rows (cc comes with g++)
set -eu

PACKAGES="libsecp256k1-dev python3 g++ make"
for flag in "$@"; do
  case "$flag" in
    --test) PACKAGES="$PACKAGES chromium haproxy" ;;
    --bench) PACKAGES="$PACKAGES wrk libssl-dev" ;;
    *)
      echo "setup-system: unknown option $flag (use --test and/or --bench)" >&2
      exit 2
      ;;
  esac
done

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  echo "setup-system: all system packages present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing packages:$missing, and apt-get is not available; install them by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "setup-system: need root (or sudo) to install:$missing" >&2
    exit 1
  fi
fi

echo "setup-system: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing

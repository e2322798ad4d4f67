#!/usr/bin/env bash
# Installs everything rdl needs on a bare Debian 12 machine (run as root): PostgreSQL 15
# with server headers, clang for bindgen, cargo-pgrx pinned to the pgrx version the crate
# uses, and pgrx pointed at the system PostgreSQL. Safe to re-run: each step is skipped
# when already done.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

phase_start "apt packages"
need=()
for p in "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" libclang-dev clang g++ sudo; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
phase_end

phase_start "cargo-pgrx ${PGRX_VERSION}"
if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi
phase_end

phase_start "cargo pgrx init"
if ! grep -qs "pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init "--pg${PG_MAJOR}" "$PG_CONFIG"
fi
phase_end

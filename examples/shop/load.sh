#!/usr/bin/env bash
# Loads the synthetic shop (customers, products, orders; see load.sql for the signal) into
# the database psql connects to. Deterministic: the same sizes and seed give the same rows.
# Usage: examples/shop/load.sh [--customers N] [--products N] [--seed N] [psql options...]
#   examples/shop/load.sh -h /tmp -p 28815 -d shop                  # 3,000 customers, 1,000 products
#   examples/shop/load.sh --products 10000 --customers 5000 -d shop10k
# Works from any working directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
customers=3000; products=1000; seed=1
while [ $# -gt 0 ]; do
    case "$1" in
    --customers) customers="$2"; shift 2 ;;
    --products) products="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    *) break ;;
    esac
done
cd "$here"
exec psql -X -q -v ON_ERROR_STOP=1 -v customers="$customers" -v products="$products" \
    -v seed="$seed" "$@" -f load.sql

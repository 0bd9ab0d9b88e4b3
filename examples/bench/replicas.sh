#!/usr/bin/env bash
# Two replicas on one PostgreSQL against one (issue 18): for each of two rounds, a fresh database,
# two `haggle serve` on it, then `bench api` through one of them and through both (both servers
# run either way, so only the routing differs). Prints one line per run with the load average.
# Usage: examples/bench/replicas.sh [BIN] [MARKETS]   (BIN: a release `haggle`; MARKETS: default 1)
# Needs PostgreSQL on its local socket and a role for this user (`.ci/run` sets both up).
set -euo pipefail
BIN=${1:-target/release/haggle}
MARKETS=${2:-1}
for round in 1 2; do
  for n in 1 2; do
    db="haggle_replicas_bench_$$_${round}_$n"
    su postgres -c "createdb -O $(id -un) $db"
    url="postgres:///$db?host=/var/run/postgresql"
    op=$("$BIN" token create --role operator --database "$url" | tail -1)
    "$BIN" serve --listen 127.0.0.1:18081 --database "$url" --rate-limit 0 >/dev/null 2>&1 & a=$!
    "$BIN" serve --listen 127.0.0.1:18082 --database "$url" --rate-limit 0 >/dev/null 2>&1 & b=$!
    sleep 3
    servers=(--server http://127.0.0.1:18081)
    [ "$n" = 2 ] && servers+=(--server http://127.0.0.1:18082)
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    summary=$("$BIN" bench api "${servers[@]}" --token "$op" --seconds 10 --markets "$MARKETS" | tail -1)
    echo "replicas=$n markets=$MARKETS load=[$load] $summary"
    kill "$a" "$b"; wait "$a" "$b" 2>/dev/null || true
    su postgres -c "dropdb $db"
  done
done

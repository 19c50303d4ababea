#!/usr/bin/env bash
# bench/instructions.sh — user-space instructions per answer of juris (valgrind callgrind), a measure that
# the machine's load does not move. For comparisons too small for CPU time on a shared machine (W3's ≤ 5 %
# policy cost, a cold-path change): CPU-µs per answer varies ±10 % between rounds here, the count < 1 %.
#
#   flock /tmp/juris-bench.lock bench/instructions.sh [--runs N] [--workload W2|W1] [--keep] VARIANT...
#
# VARIANT: nopolicy | nomine (candidate mining off) | policy-N (N blocked names: bench/work/policy/orders-N,
# made by `bench/run.sh W3`, `--w3-10m` for 10M). W2: the cold pass over W2's names, split over W3's 4 client
# addresses (IT, DE, FR, unknown), counted from the first query to the last answer. W1: the hot names,
# warmed twice uncounted, then 10 s of W1 from the same 4 addresses.
# Needs bench/work as `bench/run.sh` leaves it (the NSD hierarchy, its configs, the policy files): run
# `bench/run.sh --runs 1 W3` once first. JURIS_BIN as for run.sh (default: target/release/juris).
# Counted: the juris process's user-space instructions (callgrind `Ir`), every thread; not the kernel's
# (socket calls cost the same in every variant). Timing is meaningless under valgrind and is not reported.
# Output: one line per run on stderr, a table on stdout, rows appended to bench/work/out/instructions.tsv.
# --keep: keep each run's profile as bench/work/out/instructions/<W>.<variant>.<run>.callgrind (read it with
# `callgrind_annotate --inclusive=yes FILE`).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK="$HERE/work"
JURIS=${JURIS_BIN:-$HERE/../target/release/juris}
RUNS=1 WL=W2 KEEP= VARIANTS=()
while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --workload) WL=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    nopolicy|nomine|policy-[0-9]*) VARIANTS+=("$1") ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((${#VARIANTS[@]})) || VARIANTS=(nopolicy)
[[ "$WL" == W1 || "$WL" == W2 ]] || { echo "--workload: W1 or W2, not $WL" >&2; exit 2; }
for t in valgrind callgrind_control nsd dnsperf dig; do
  command -v "$t" >/dev/null || { echo "missing: $t (apt-get install -y valgrind nsd dnsperf bind9-dnsutils)" >&2; exit 1; }
done
[[ -x "$JURIS" ]] || { echo "no juris binary at $JURIS (set JURIS_BIN)" >&2; exit 1; }
HIER="$WORK/hier" CONF="$WORK/conf/juris.toml"
[[ -s "$HIER/servers.txt" && -s "$CONF" ]] || { echo "bench/work is not prepared: run bench/run.sh --runs 1 W3 first" >&2; exit 1; }
for v in "${VARIANTS[@]}"; do
  [[ "$v" != policy-* || -d "$WORK/policy/orders-${v#policy-}" ]] ||
    { echo "$v: no $WORK/policy/orders-${v#policy-} (bench/run.sh W3 makes 1M, --w3-10m 10M)" >&2; exit 1; }
done
for v in "${VARIANTS[@]}"; do
  [[ "$v" != nomine || -s "$WORK/conf/juris-nomine.toml" ]] || { echo "nomine: no juris-nomine.toml (bench/run.sh W3)" >&2; exit 1; }
done

ADDR=$(sed -n 's/^listen = \["\([0-9.]*\):\([0-9]*\)"\]/\1/p' "$CONF")
PORT=$(sed -n 's/^listen = \["\([0-9.]*\):\([0-9]*\)"\]/\2/p' "$CONF")
SOURCES=(127.0.0.101 127.0.0.102 127.0.0.103 127.0.0.104)
OUT="$WORK/out/instructions"
mkdir -p "$OUT"
TSV="$WORK/out/instructions.tsv"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PIDS=()
cleanup() { local p; for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for a in $(cat "$HIER/servers.txt"); do
  if ss -Hlun | awk -v a="$a:53" '$4 == a { f = 1 } END { exit !f }'; then echo "$a:53 in use (another bench run?)" >&2; exit 1; fi
  rm -f "$HIER/nsd/$a/nsd.pid"
  setsid nsd -d -c "$HIER/nsd/$a/nsd.conf" >/dev/null 2>&1 </dev/null &
  PIDS+=($!)
done
sld=$(grep -m1 '\.1\.1$' "$HIER/servers.txt")
for _ in $(seq 1 40); do
  [[ "$(dig +short +norec +time=1 +tries=1 @"$sld" h0.zone0.com A 2>/dev/null | head -n1)" == 198.51.* ]] && break
  sleep 0.5
done
log "hierarchy up (${#PIDS[@]} NSD servers)"

split_w2() { local k; for k in 1 2 3 4; do awk -v k="$k" 'NR % 4 == k % 4' "$HIER/w2.txt" >"$OUT/w2-part$k.txt"; done; }
split_w2

# one_run VARIANT RUN -> prints "instructions answers"
one_run() {
  local v=$1 r=$2 conf=$CONF extra=() tag="$OUT/$WL.$1.$2"
  [[ "$v" == nomine ]] && conf="$WORK/conf/juris-nomine.toml"
  [[ "$v" == policy-* ]] && extra=(--orders "$WORK/policy/orders-${v#policy-}" --geoip "$WORK/policy/geo.mmdb")
  rm -rf "$tag".* "$OUT/data"
  setsid valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$tag.cg.%p" \
    "$JURIS" serve --config "$conf" --threads 1 --data-dir "$OUT/data" "${extra[@]+"${extra[@]}"}" >"$tag.log" 2>&1 </dev/null &
  local jp=$! i
  PIDS+=("$jp")
  for ((i = 0; i < 3600; i++)); do
    dig +short +time=1 +tries=1 -p "$PORT" @"$ADDR" a.root. A >/dev/null 2>&1 && break
    kill -0 "$jp" 2>/dev/null || { echo "juris exited; see $tag.log" >&2; return 1; }
    sleep 1
  done
  local n=0 dp=() s file
  if [[ "$WL" == W1 ]]; then
    dnsperf -s "$ADDR" -p "$PORT" -d "$HIER/w1.txt" -n 2 -l 600 -c 4 -q 20 -t 10 >"$tag.warm.txt" 2>&1 || true
  fi
  callgrind_control -i on "$jp" >/dev/null 2>&1
  for s in "${SOURCES[@]}"; do
    n=$((n + 1))
    if [[ "$WL" == W2 ]]; then file=(-d "$OUT/w2-part$n.txt" -n 1 -l 1800); else file=(-d "$HIER/w1.txt" -l 10); fi
    dnsperf -s "$ADDR" -a "$s" -p "$PORT" -c 2 -q 20 -t 10 "${file[@]}" >"$tag.dnsperf.$n.txt" 2>&1 &
    dp+=($!)
  done
  wait "${dp[@]}" || true
  callgrind_control -d "$jp" >/dev/null 2>&1
  sleep 1
  kill -TERM -- "-$jp" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$jp" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$jp" 2>/dev/null || true
  wait "$jp" 2>/dev/null || true
  local ir answers lost
  ir=$(awk '/^summary:/ { print $2; exit }' "$tag".cg.*.1)
  answers=$(awk '/Queries completed:/ { s += $3 } END { print s + 0 }' "$tag".dnsperf.*.txt)
  lost=$(awk '/Queries lost:/ { s += $3 } END { print s + 0 }' "$tag".dnsperf.*.txt)
  if [[ -n "$KEEP" ]]; then mv "$tag".cg.*.1 "$tag.callgrind"; fi
  rm -f "$tag".cg.*
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$WL" "$v" "$r" "$ir" "$answers" "$lost" | tee -a "$TSV" >&2
  echo "$ir $answers"
}

declare -A PER
for ((r = 1; r <= RUNS; r++)); do
  for v in "${VARIANTS[@]}"; do
    log "$WL $v run $r"
    read -r ir answers < <(one_run "$v" "$r")
    PER[$v]+="$(awk -v i="$ir" -v a="$answers" 'BEGIN { printf "%.0f ", (a > 0 ? i / a : -1) }')"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ x[NR] = $1 } END { if (NR % 2) print x[(NR + 1) / 2]; else print (x[NR / 2] + x[NR / 2 + 1]) / 2 }'; }
base=
echo "| $WL variant | instructions per answer (median of $RUNS) | runs | vs ${VARIANTS[0]} |"
echo "|---|---|---|---|"
for v in "${VARIANTS[@]}"; do
  m=$(median <<<"${PER[$v]}")
  [[ -n "$base" ]] || base=$m
  printf '| %s | %s | %s | %s |\n' "$v" "$m" "${PER[$v]% }" "$(awk -v m="$m" -v b="$base" 'BEGIN { printf "%+.1f%%", (m / b - 1) * 100 }')"
done

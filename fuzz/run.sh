#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain (docs/fuzzing.md, design 0046).
#
#   fuzz/run.sh build                      build the instrumented binary (every target in one)
#   fuzz/run.sh TARGET [SECONDS] [FLAG..]  fuzz one target (default 300 s; FLAGs go to libFuzzer)
#   fuzz/run.sh all [SECONDS]              every target, SECONDS each (default 300), FUZZ_JOBS at a time
#   fuzz/run.sh merge TARGET|all           add to fuzz/corpus/TARGET/ the inputs of past runs that reach
#                                          coverage the corpus does not (libFuzzer -set_cover_merge=1)
#   fuzz/run.sh replay TARGET FILE..       run inputs (a crash's) through the instrumented target
#
# The sanitizer-coverage instrumentation libFuzzer needs (8-bit edge counters, the PC table, traced
# comparisons) is plain LLVM passes and options, which stable rustc accepts with -C; only the
# sanitizers (-Zsanitizer=address) need nightly, and safe Rust has no memory errors for them to find.
# The `fuzz` profile (Cargo.toml) is optimised with debug assertions and overflow checks on.
#
# New inputs go to target/fuzz-runs/corpus/TARGET/ (fuzz/corpus/TARGET/ is read, never written, except by
# `merge`); a crash, panic, timeout or out-of-memory input to target/fuzz-runs/artifacts/TARGET/, and the
# run fails printing it. Logs: target/fuzz-runs/logs/TARGET.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

targets=(parse_query upstream_response parse_order rpz_import feed_import)
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=$target_dir/$host/fuzz/juris-libfuzzer
work=$target_dir/fuzz-runs  # not target/fuzz: cargo keeps the fuzz profile's host artifacts there

usage() {
  sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

known() {
  local t
  for t in "${targets[@]}"; do [ "$t" = "$1" ] && return 0; done
  echo "unknown fuzz target '$1' (one of: ${targets[*]})" >&2
  exit 2
}

build() {
  # --target: RUSTFLAGS then reach only the crates of the binary, not build scripts and proc macros
  # (which would not link without libFuzzer's coverage callbacks).
  local flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
  flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
  flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth"
  flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
  RUSTFLAGS="$flags ${RUSTFLAGS:-}" cargo build --quiet --profile fuzz --target "$host" \
    -p juris-fuzz --features libfuzzer --bin juris-libfuzzer
}

# Prints the inputs of a failed run and the end of its log.
report_failure() {
  local t=$1 status=$2 file
  echo "FAILED: fuzz target $t (libFuzzer exit $status); log: $work/logs/$t.log" >&2
  grep -v -e '^#[0-9]' -e 'NEW_FUNC' "$work/logs/$t.log" | tail -n 40 >&2 || true
  for file in "$work/artifacts/$t"/*; do
    [ -f "$file" ] || continue
    echo "--- input $file ($(stat -c %s "$file") bytes), base64:" >&2
    base64 -w 0 <"$file" | head -c 8192 >&2
    echo >&2
    echo "replay: fuzz/run.sh replay $t $file; keep it: copy it to fuzz/corpus/$t/ (cargo test -p juris-fuzz replays it)" >&2
  done
}

# fuzz_one TARGET SECONDS [FLAG..]: one libFuzzer run; its summary line on success.
fuzz_one() {
  local t=$1 seconds=$2 status=0
  shift 2
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
  rm -f "$work/artifacts/$t"/*
  JURIS_FUZZ_TARGET=$t nice "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" "$@" \
    "$work/corpus/$t" "fuzz/corpus/$t" >"$work/logs/$t.log" 2>&1 || status=$?
  if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts/$t")" ]; then
    report_failure "$t" "$status"
    return 1
  fi
  local runs cov
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/logs/$t.log")
  cov=$(grep -E '^#[0-9]+' "$work/logs/$t.log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || true)
  echo "fuzz $t: ${seconds}s, $runs runs, $cov, no crash"
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case "$cmd" in
  build)
    build
    ;;
  all)
    seconds=${1:-300}
    jobs=${FUZZ_JOBS:-$(nproc)}
    build
    mkdir -p "$work/status"
    for t in "${targets[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
      (if fuzz_one "$t" "$seconds"; then echo 0 >"$work/status/$t"; else echo 1 >"$work/status/$t"; fi) &
    done
    wait
    failed=0
    for t in "${targets[@]}"; do [ "$(cat "$work/status/$t")" = 0 ] || failed=1; done
    exit $failed
    ;;
  merge)
    [ $# -eq 1 ] || usage
    build
    [ "$1" = all ] && list=("${targets[@]}") || { known "$1"; list=("$1"); }
    for t in "${list[@]}"; do
      [ -d "$work/corpus/$t" ] || continue
      before=$(find "fuzz/corpus/$t" -type f | wc -l)
      bytes=$(du -sb "fuzz/corpus/$t" | cut -f1)
      # Edges, not hit counts (-use_counters=0), and inputs up to 4 KiB: a corpus that stays small.
      JURIS_FUZZ_TARGET=$t nice "$bin" -set_cover_merge=1 -use_counters=0 -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        "fuzz/corpus/$t" "$work/corpus/$t" >"$work/logs/$t.merge.log" 2>&1 \
        || { tail -n 20 "$work/logs/$t.merge.log" >&2; exit 1; }
      after=$(find "fuzz/corpus/$t" -type f | wc -l)
      echo "merge $t: $((after - before)) inputs added ($(($(du -sb "fuzz/corpus/$t" | cut -f1) - bytes)) bytes)"
    done
    ;;
  replay)
    [ $# -ge 2 ] || usage
    known "$1"
    build
    t=$1
    shift
    JURIS_FUZZ_TARGET=$t "$bin" "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    known "$cmd"
    seconds=${1:-300}
    [ $# -gt 0 ] && shift
    build
    fuzz_one "$cmd" "$seconds" "$@"
    ;;
esac

#!/usr/bin/env bash
# juris against Unbound, PowerDNS Recursor and Knot Resolver on a local NSD hierarchy (loopback
# only). See bench/README.md. Usage: bench/run.sh [--quick] [--runs N] [--duration S]
#        [--servers juris,unbound,pdns,kresd] [--w3-10m] [--w8-rate QPS] [W0 W1 W2 W3 W4 W5 W7 W7-tcp W7-dot W7-doh W7-doh-post W8 ...]
#        [W1-DNSSEC W2-DNSSEC]  (DNSSEC = both: the signed hierarchy, validation on in every server)
#        (W7 = W7-tcp, W7-dot, W7-doh (GET) and W7-doh-post)   [--profile]   also perf-record juris in W1/W2/W7 (work/out/perf-*.txt)
#        JURIS_BIN=/path/to/juris bench/run.sh ...   benchmarks a prebuilt binary (no cargo build)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
WORK="$HERE/work"
RESULTS="$HERE/results"

RUNS=3
DURATION=10
QUICK=0
W3_10M=0
PROFILE=0                        # --profile: perf record juris during its W1/W2/W7 measurements
SERVERS="juris,unbound,pdns,kresd"
WORKLOADS=()
ADDR=127.55.9.1                  # every resolver under test listens here, on its own port
declare -A PORT=([echo]=5300 [juris]=5301 [unbound]=5302 [pdns]=5303 [kresd]=5304 [juris-noval]=5301)
declare -A DOT_PORT=([juris]=5311 [unbound]=5312 [kresd]=5314)     # DNS over TLS listeners (W7-dot)
declare -A DOT_NA=([pdns]="n/a (no DoT in 4.8)")                     # servers without incoming DoT
declare -A DOH_PORT=([juris]=5321 [unbound]=5322 [kresd]=5324)     # DNS over HTTPS listeners (W7-doh*)
declare -A DOH_NA=([pdns]="n/a (no DoH in 4.8)")                     # servers without incoming DoH
CLIENTS=8                        # dnsperf -c (sockets / TCP connections)
OUTSTANDING=200                  # dnsperf -q
COUNTRY_SOURCES="127.0.0.101 127.0.0.102 127.0.0.103 127.0.0.104"   # IT DE FR, unknown
# W5: cold-cache latency with the authoritative servers "far away". tc netem on lo delays only the
# packets *to* the NSD addresses (root and TLDs 127.55.0.0/24, second-level zones 127.55.1.0/24, as
# written by lib/gen.py); the client <-> resolver traffic on $ADDR and everything else on lo is not
# delayed. The qdisc exists only while W5 runs and is removed on exit (see netem_on/netem_off).
W5_RATE=500                      # dnsperf -Q: a modest fixed rate (a latency workload, not CPU-bound)
W5_NAMES=4000                    # names sampled from w2.txt (every 5th line; --quick: 1500)
W5_HANDLE=550                    # our root qdisc on lo is "prio 550:"; anything else there is not ours
W5_NET0=127.55.0.0/24 W5_DELAY0="15ms 3ms"   # root + TLD servers: netem 554: on band 550:4
W5_NET1=127.55.1.0/24 W5_DELAY1="40ms 8ms"   # second-level servers: netem 555: on band 550:5
# W8: a random-subdomain flood (bench/flood/flood.c, open loop) from one client address mixed with
# W1's hot load (dnsperf) from another, in another /24 (rate limits group IPv4 clients by /24).
W8_SERVERS="juris unbound kresd"  # the servers W8 compares (each with its flood protections, write_w8_configs)
W8_VICTIM=zone5.net              # a zone of the bench hierarchy: nx-<random>.zone5.net never exists
W8_LEGIT=127.0.9.1               # the legitimate client (W1's names)
W8_FLOODER=127.0.8.1             # the flooder
W8_FACTOR=1.5                    # flood rate = W8_FACTOR x juris's measured cold capacity
W8_RATE=                         # --w8-rate QPS: a fixed flood rate instead (no capacity measurement)
# --w8-cpu PCT: every server runs W8 under a CPU quota of PCT % of one CPU (cgroup cpu controller, 1 ms
# of every 100/PCT ms), so that the server's CPU bounds W1, not dnsperf's on CPU 0 (design 0050); the flood is then
# W8_FACTOR x the cold capacity within that quota. 100: no quota (the runs before design 0050).
W8_CPU=50
W8_GEN_BOUND=97                  # CPU 0 busy at least this % during a W8 row: the load generators bound it
# juris's server.rate_limit.misses_slip in W8 (0: its limited misses are all dropped, design 0044); the
# environment can set another (W8_MISSES_SLIP=2: every second one answered TC=1), or empty to leave the key out.
W8_MISSES_SLIP=${W8_MISSES_SLIP-0}
# juris's server.rate_limit.kernel_drop_after in W8 (design 0050: a prefix with this many limited in one
# second is dropped in the kernel); empty leaves the key out (off).
W8_KERNEL_DROP=${W8_KERNEL_DROP-10000}
# prio's priomap (the default one, spelled out) only selects bands 1-3, so bands 4 and 5 get nothing
# but what the two u32 filters send there.
W5_TC=(
  "qdisc add dev lo root handle $W5_HANDLE: prio bands 5 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
  "qdisc add dev lo parent $W5_HANDLE:4 handle 554: netem delay $W5_DELAY0 distribution normal limit 10000"
  "qdisc add dev lo parent $W5_HANDLE:5 handle 555: netem delay $W5_DELAY1 distribution normal limit 10000"
  "filter add dev lo protocol ip parent $W5_HANDLE: prio 1 u32 match ip dst $W5_NET0 flowid $W5_HANDLE:4"
  "filter add dev lo protocol ip parent $W5_HANDLE: prio 1 u32 match ip dst $W5_NET1 flowid $W5_HANDLE:5"
)

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --quick) QUICK=1; RUNS=1; DURATION=3; W5_NAMES=1500 ;;
    --runs) RUNS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --servers) SERVERS="$2"; shift ;;
    --w3-10m) W3_10M=1 ;;
    --profile) PROFILE=1 ;;
    --w8-rate) W8_RATE="$2"; shift ;;
    --w8-cpu) W8_CPU="$2"; shift ;;
    -h|--help) usage 0 ;;
    W7) WORKLOADS+=(W7-tcp W7-dot W7-doh W7-doh-post) ;;
    DNSSEC) WORKLOADS+=(W1-DNSSEC W2-DNSSEC) ;;
    W[0-9]|W7-tcp|W7-dot|W7-doh|W7-doh-post|W1-DNSSEC|W2-DNSSEC) WORKLOADS+=("$1") ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done
((${#WORKLOADS[@]})) || WORKLOADS=(W0 W1 W2 W7-tcp W7-dot W7-doh W7-doh-post W3 W4 W5 W8)
declare -A seen_wl=()
uniq_wl=()
for w in "${WORKLOADS[@]}"; do [[ -n "${seen_wl[$w]:-}" ]] || { seen_wl[$w]=1; uniq_wl+=("$w"); }; done
WORKLOADS=("${uniq_wl[@]}")
[[ "$RUNS" =~ ^[1-9][0-9]?$ && "$DURATION" =~ ^[1-9][0-9]{0,2}$ ]] || { echo "bad --runs/--duration" >&2; exit 2; }
[[ -z "$W8_RATE" || "$W8_RATE" =~ ^[1-9][0-9]{0,6}$ ]] || { echo "bad --w8-rate (queries per second)" >&2; exit 2; }
[[ "$W8_CPU" =~ ^[1-9][0-9]?$|^100$ ]] || { echo "bad --w8-cpu (percent of one CPU, 1-100)" >&2; exit 2; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
has_workload() { local w; for w in "${WORKLOADS[@]}"; do [[ "$w" == "$1" ]] && return 0; done; return 1; }

# ---- packages ------------------------------------------------------------------------------
missing=()
need() { command -v "$2" >/dev/null 2>&1 || missing+=("$1"); }
need nsd nsd; need dnsperf dnsperf; need gcc gcc; need python3 python3; need util-linux taskset
need bind9-dnsutils dig; need iproute2 ss; need procps pgrep
if ((${#missing[@]})); then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with: apt-get install -y nsd unbound pdns-recursor knot-resolver dnsperf linux-perf gcc python3 bind9-dnsutils" >&2
  exit 1
fi
IFS=, read -r -a WANTED <<<"$SERVERS"
SERVER_LIST=()
for s in "${WANTED[@]}"; do
  case "$s" in
    juris) SERVER_LIST+=(juris) ;;
    unbound) if command -v unbound >/dev/null; then SERVER_LIST+=(unbound); else log "unbound missing (apt-get install -y unbound): skipped"; fi ;;
    pdns) if command -v pdns_recursor >/dev/null; then SERVER_LIST+=(pdns); else log "pdns-recursor missing (apt-get install -y pdns-recursor): skipped"; fi ;;
    kresd) if command -v kresd >/dev/null; then SERVER_LIST+=(kresd); else log "knot-resolver missing (apt-get install -y knot-resolver): skipped"; fi ;;
    *) echo "unknown server $s" >&2; exit 2 ;;
  esac
done
[[ "$(nproc)" -ge 2 ]] || { echo "needs 2 CPUs (server on CPU 1, dnsperf on CPU 0)" >&2; exit 1; }

# ---- processes: every one we start is a session leader, killed with its group on exit --------
PIDS=()
SPAWNED=
spawn() { # spawn CPU LOGFILE CMD... ; sets SPAWNED
  local cpu=$1 logfile=$2; shift 2
  setsid taskset -c "$cpu" "$@" >"$logfile" 2>&1 </dev/null &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}
stop_pid() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}
# W5's qdisc on lo: ours only if the root is "prio $W5_HANDLE:" (never touch anybody else's).
lo_qdiscs() { tc qdisc show dev lo 2>&1 || true; }
netem_ours() { command -v tc >/dev/null 2>&1 && grep -q "^qdisc prio $W5_HANDLE: root" <<<"$(lo_qdiscs)"; }
netem_off() { if netem_ours; then tc qdisc del dev lo root 2>/dev/null || true; fi; }
cleanup() {
  local p
  netem_off
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL -- "-$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ -n "$CG_DIR" ]] && rmdir "$CG_DIR" 2>/dev/null
  true
}
# W8's CPU quota: a cgroup of our own (v2 where the cpu controller is there, else v1's cpu hierarchy).
CG_DIR=
cg_setup() { # cg_setup PCT: sets CG_DIR to a cgroup limited to PCT % of one CPU; fails if none can be made
  # (the kernel's shortest quota is 1 ms: 1 ms per 100/PCT ms, e.g. 1 ms of every 2 ms for 50 %)
  local pct=$1 d
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    d=/sys/fs/cgroup/juris-bench-w8
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control || return 1
    mkdir -p "$d" && echo "1000 $((100000 / pct))" >"$d/cpu.max" || return 1
  elif [[ -d /sys/fs/cgroup/cpu ]]; then
    d=/sys/fs/cgroup/cpu/juris-bench-w8
    mkdir -p "$d" && echo $((100000 / pct)) >"$d/cpu.cfs_period_us" && echo 1000 >"$d/cpu.cfs_quota_us" || return 1
  else
    return 1
  fi
  CG_DIR=$d
}
cg_add() { echo "$1" >"$CG_DIR/cgroup.procs"; }   # cg_add PID: the process and its threads, present and future
# CPU 0's busy and total ticks (user nice system irq softirq steal; + idle iowait)
cpu0_ticks() { awk '$1 == "cpu0" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
trap cleanup EXIT
trap 'exit 130' INT TERM

udp_bound() { ss -Hlun 2>/dev/null | awk -v a="$1:$2" '$4 == a { f = 1 } END { exit !f }'; }
tcp_bound() { ss -Hltn 2>/dev/null | awk -v a="$1:$2" '$4 == a { f = 1 } END { exit !f }'; }
wait_udp() { # wait_udp ADDR PORT PID SECONDS [tcp]: until a UDP (or TCP listening) socket is bound
  local i
  for ((i = 0; i < $4 * 20; i++)); do
    if [[ "${5:-udp}" == tcp ]]; then tcp_bound "$1" "$2" && return 0; else udp_bound "$1" "$2" && return 0; fi
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
cpu_ticks() { local f; read -r -a f < <(sed 's/^.*) //' "/proc/$1/stat"); echo $((f[11] + f[12])); }
CLK_TCK=$(getconf CLK_TCK)
# cpu_sample PID -> "SCHED_NS TIDS STAT_TICKS": per-thread sum_exec_runtime (ns, /proc/PID/task/*/schedstat)
# and utime+stime of the whole process (/proc/PID/stat, clock ticks, includes exited threads).
cpu_sample() {
  local pid=$1 t a ns=0 tids=""
  for t in /proc/"$pid"/task/*; do
    read -r a _ <"$t/schedstat" || a=0
    ns=$((ns + a)); tids+="${t##*/},"
  done
  echo "$ns $tids $(cpu_ticks "$pid")"
}

# ---- build ---------------------------------------------------------------------------------
mkdir -p "$WORK"/{conf,run,out} "$RESULTS"
if [[ -n "${JURIS_BIN:-}" ]]; then
  JURIS="$JURIS_BIN"
  log "using JURIS_BIN=$JURIS (not building)"
else
  log "building juris (release)"
  if ! (cd "$REPO" && cargo build --release -p juris 2>&1 | tail -n 3 >&2); then
    echo "cargo build --release -p juris failed (set JURIS_BIN=/path/to/juris to benchmark a prebuilt binary)" >&2
    exit 1
  fi
  JURIS="${CARGO_TARGET_DIR:-$REPO/target}/release/juris"
fi
[[ -x "$JURIS" ]] || { echo "no $JURIS" >&2; exit 1; }
gcc -O2 -Wall -o "$WORK/echo" "$HERE/echo/echo.c"
gcc -O2 -Wall -o "$WORK/flood" "$HERE/flood/flood.c"

# ---- hierarchy -----------------------------------------------------------------------------
HIER="$WORK/hier"
if [[ ! -f "$HIER/w2.txt" || "$HERE/lib/gen.py" -nt "$HIER/w2.txt" ]]; then
  rm -rf "$HIER"
  python3 "$HERE/lib/gen.py" hierarchy "$HIER" >&2
fi
W1_FILE="$HIER/w1.txt"
W2_FILE="$HIER/w2.txt"
mapfile -t NSD_ADDRS <"$HIER/servers.txt"
if ((QUICK)); then head -n 3000 "$HIER/w2.txt" >"$WORK/w2-quick.txt"; W2_FILE="$WORK/w2-quick.txt"; fi

start_nsd_set() { # start_nsd_set DIR: one NSD per line of DIR/servers.txt; checks h0.zone0.com on the first SLD server
  local dir=$1 a i=0 check= pids=() addrs=()
  mapfile -t addrs <"$dir/servers.txt"
  for a in "${addrs[@]}"; do
    if udp_bound "$a" 53; then echo "$a:53 is already in use (another bench run?)" >&2; exit 1; fi
  done
  for a in "${addrs[@]}"; do
    rm -f "$dir/nsd/$a/nsd.pid"
    spawn 0 "$dir/nsd/$a/stdout.log" nsd -d -c "$dir/nsd/$a/nsd.conf"
    pids+=("$SPAWNED")
  done
  for a in "${addrs[@]}"; do
    wait_udp "$a" 53 "${pids[$i]}" 20 || { echo "NSD on $a did not start:"; cat "$dir/nsd/$a/nsd.log" "$dir/nsd/$a/stdout.log"; exit 1; } >&2
    i=$((i + 1))
  done
  # NSD binds before it has loaded its zones: allow it a few seconds to answer.
  local sld; sld=$(grep -m1 '\.1\.1$' "$dir/servers.txt")
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    check=$(dig +short +norec +time=1 +tries=1 @"$sld" h0.zone0.com A 2>/dev/null | grep -v '^;' | head -n1 || true)
    [[ "$check" == 198.51.* ]] && break
    sleep 0.5
  done
  [[ "$check" == 198.51.* ]] || { echo "hierarchy check failed ($dir, @$sld): '$check'" >&2; exit 1; }
  log "hierarchy up: ${#addrs[@]} NSD servers of $dir on $(sed -n 1p "$dir/servers.txt" | cut -d. -f1-2).0.0/16:53"
}
start_nsd_set "$HIER"
# A W5 qdisc left on lo by a run that was killed (SIGKILL skips the trap): the NSD check above
# proved no other run is active, so it is removed here.
if netem_ours; then log "removing a W5 netem qdisc left on lo by an earlier run"; netem_off; fi

# ---- the signed hierarchy (W1-DNSSEC, W2-DNSSEC) ----------------------------------------------
# The same zones and names on 127.56.0.0/16, signed by the test kit's signer (tests/examples/
# sign_hierarchy.rs: ldns-keygen, ldns-signzone, ldns-key2ds; the policy per zone is in gen.py),
# plus bogus.com. with expired signatures. Signatures are valid from a day ago for 30 days: the
# zones are signed again when older than 7 days or when the generator or the signer changed.
SHIER="$WORK/hier-signed"
ANCHOR="$SHIER/root.ds"
DNSSEC_OK=0
if has_workload W1-DNSSEC || has_workload W2-DNSSEC; then
  need ldnsutils ldns-signzone
  if ((${#missing[@]})); then echo "W1-DNSSEC/W2-DNSSEC need: apt-get install -y ${missing[*]}" >&2; exit 1; fi
  signer_src="$REPO/tests/examples/sign_hierarchy.rs"
  if [[ ! -s "$ANCHOR" || "$HERE/lib/gen.py" -nt "$ANCHOR" || "$signer_src" -nt "$ANCHOR" ||
        -n "$(find "$ANCHOR" -mtime +7 2>/dev/null)" ]]; then
    log "signing the hierarchy (cargo build -p juris-testkit --example sign_hierarchy)"
    rm -rf "$SHIER"
    python3 "$HERE/lib/gen.py" hierarchy "$SHIER" --signed >&2
    (cd "$REPO" && cargo build -q -p juris-testkit --example sign_hierarchy >&2) || { echo "cannot build the signer" >&2; exit 1; }
    "${CARGO_TARGET_DIR:-$REPO/target}/debug/examples/sign_hierarchy" "$SHIER/zones.tsv" "$ANCHOR.tmp" || { echo "signing failed" >&2; exit 1; }
    mv "$ANCHOR.tmp" "$ANCHOR"
  fi
  cmp -s "$SHIER/w2.txt" "$HIER/w2.txt" || { echo "the signed hierarchy's names differ from W2's" >&2; exit 1; }
  start_nsd_set "$SHIER"
  dig +dnssec +norec +time=1 +tries=1 @127.56.1.1 h0.zone0.com A 2>/dev/null | grep -q 'RRSIG' ||
    { echo "the signed hierarchy serves no RRSIG for h0.zone0.com" >&2; exit 1; }
  DNSSEC_OK=1
fi

# ---- server configurations -----------------------------------------------------------------
C="$WORK/conf"
TLS_DIR="$WORK/tls"                # self-signed cert.pem/key.pem for the DoT and DoH listeners (W7-dot, W7-doh*)
make_cert() {
  [[ -s "$TLS_DIR/cert.pem" && -s "$TLS_DIR/key.pem" ]] && return 0
  rm -rf "$TLS_DIR"; mkdir -p "$TLS_DIR"
  if (cd "$TLS_DIR" && "$JURIS" cert self-signed --name localhost >/dev/null 2>&1); then return 0; fi
  log "'juris cert self-signed' failed; using openssl for the DoT certificate"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=localhost \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >/dev/null 2>&1
}
# Each server has a plain configuration, a "-dot" one (the same plus a DoT listener on DOT_PORT,
# used only by W7-dot) and a "-doh" one (plus a DoH listener on DOH_PORT, used only by W7-doh*),
# so that no other workload runs with a TLS listener open.
juris_toml() { # juris_toml [dot|doh] [val|noval]: val/noval = the signed hierarchy, validation on/off
  local hints="$HIER/root.hints"
  [[ -n "${2:-}" ]] && hints="$SHIER/root.hints"
  cat <<EOF
[server]
listen = ["$ADDR:${PORT[juris]}"]
threads = 1
allow = ["127.0.0.0/8"]
EOF
  if [[ "${1:-}" == dot ]]; then echo "listen_tls = [\"$ADDR:${DOT_PORT[juris]}\"]"; fi
  if [[ "${1:-}" == doh ]]; then echo "listen_https = [\"$ADDR:${DOH_PORT[juris]}\"]"; fi
  cat <<EOF

[resolver]
root_hints = "$hints"
ipv6 = false
allow_loopback_upstreams = true

[cache]
size = "256M"

EOF
  if [[ "${2:-}" == val ]]; then
    printf '# W1-DNSSEC/W2-DNSSEC: validation on, the signed hierarchy'"'"'s own root anchor.\n[dnssec]\nenabled = true\ntrust_anchors = ["%s"]\n' "$ANCHOR"
  else
    if [[ "${2:-}" == noval ]]; then
      printf '# juris-noval: the signed hierarchy with validation off (what validation costs juris).\n'
    else
      printf '# The bench hierarchy is unsigned and the peers run without validation: like for like.\n'
    fi
    printf '[dnssec]\nenabled = false\n'
  fi
  cat <<EOF

[log]
level = "info"
EOF
  if [[ -n "${1:-}" ]]; then printf '\n[tls]\ncert = "%s"\nkey = "%s"\n' "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem"; fi
}
unbound_tls() { # unbound_tls tls-port|https-port PORT: unbound.conf plus a DoT or DoH listener on PORT
  sed '/^remote-control:/,$d' "$C/unbound.conf"
  cat <<EOF
    interface: $ADDR@$2
    $1: $2
    tls-service-key: "$TLS_DIR/key.pem"
    tls-service-pem: "$TLS_DIR/cert.pem"
remote-control:
    control-enable: no
EOF
}
write_configs() {
  juris_toml >"$C/juris.toml"
  juris_toml dot >"$C/juris-dot.toml"
  juris_toml doh >"$C/juris-doh.toml"
  mkdir -p "$WORK/run/unbound" "$WORK/run/pdns" "$WORK/run/kresd" "$WORK/run/juris-data"
  cat >"$C/unbound.conf" <<EOF
server:
    verbosity: 0
    num-threads: 1
    interface: $ADDR
    port: ${PORT[unbound]}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    incoming-num-tcp: 100
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    root-hints: "$HIER/root.hints"
    qname-minimisation: yes
    module-config: "iterator"
    msg-cache-size: 128m
    rrset-cache-size: 256m
    directory: "$WORK/run/unbound"
    chroot: ""
    username: ""
    pidfile: ""
    use-syslog: no
    logfile: ""
remote-control:
    control-enable: no
EOF
  unbound_tls tls-port "${DOT_PORT[unbound]}" >"$C/unbound-dot.conf"
  unbound_tls https-port "${DOH_PORT[unbound]}" >"$C/unbound-doh.conf"
  cat >"$C/recursor.conf" <<EOF
threads=1
pdns-distributes-queries=no
local-address=$ADDR
local-port=${PORT[pdns]}
allow-from=127.0.0.0/8
hint-file=$HIER/root.hints
dont-query=
dnssec=off
qname-minimization=yes
query-local-address=127.0.0.1
socket-dir=$WORK/run/pdns
daemon=no
disable-syslog=yes
log-timestamp=yes
loglevel=3
security-poll-suffix=
max-cache-entries=2000000
max-packetcache-entries=2000000
max-tcp-clients=200
EOF
  cat >"$C/kresd.conf" <<EOF
-- Knot Resolver 5.x, one instance (kresd -n), no DNSSEC, local hierarchy only.
net.ipv6 = false
net.listen('$ADDR', ${PORT[kresd]}, { kind = 'dns' })
trust_anchors.remove('.')
modules.unload('ta_update')
modules.unload('ta_signal_query')
modules.unload('detect_time_skew')
modules.load('hints > iterate')
hints.root({ ['a.root.'] = '127.55.0.1' })
option('NO_MINIMIZE', false)
option('ALLOW_LOCAL', true)
cache.size = 256 * MB
EOF
  { cat "$C/kresd.conf"
    echo "net.listen('$ADDR', ${DOT_PORT[kresd]}, { kind = 'tls' })"
    echo "net.tls('$TLS_DIR/cert.pem', '$TLS_DIR/key.pem')"
  } >"$C/kresd-dot.conf"
  { cat "$C/kresd.conf"
    echo "net.listen('$ADDR', ${DOH_PORT[kresd]}, { kind = 'doh2' })"
    echo "net.tls('$TLS_DIR/cert.pem', '$TLS_DIR/key.pem')"
  } >"$C/kresd-doh.conf"
  # W3's nopolicy-nomine: juris without candidate mining, for what mining costs W2.
  { cat "$C/juris.toml"; printf '\n[candidates]\nenabled = false\n'; } >"$C/juris-nomine.toml"
  if ((DNSSEC_OK)); then
    juris_toml "" val >"$C/juris-val.toml"
    juris_toml "" noval >"$C/juris-noval.toml"
    write_val_configs
  fi
  write_w8_configs
}

# W8: each server's plain configuration plus its protections against a random-subdomain flood
# (bench/README.md, "W8"). The rates are per client address (prefix) or per zone, never per name.
write_w8_configs() {
  { cat "$C/juris.toml"
    cat <<EOF

# W8: flood protections (per client /24: cache misses, i.e. resolutions, per second).
[server.rate_limit]
misses_per_second = 2000
${W8_MISSES_SLIP:+misses_slip = $W8_MISSES_SLIP}
${W8_KERNEL_DROP:+kernel_drop_after = $W8_KERNEL_DROP}

[resolver.limits]
max_outstanding_per_zone = 100
EOF
  } >"$C/juris-w8.toml"
  sed '/^remote-control:/,$d' "$C/unbound.conf" >"$C/unbound-w8.conf"
  cat >>"$C/unbound-w8.conf" <<EOF
    # W8: flood protections (ratelimit-factor keeps its default, 10: 1 in 10 over the rate is resolved).
    ratelimit: 1000
remote-control:
    control-enable: no
EOF
  # Knot Resolver 5.6 has no rate limiting (its rrl arrived in 6.0): its defaults.
  cp "$C/kresd.conf" "$C/kresd-w8.conf"
}

# The validating peers (W1-DNSSEC, W2-DNSSEC): the plain configuration on the signed hierarchy's
# root hints, with validation on and the hierarchy's root DS as the only trust anchor.
write_val_configs() {
  local ds; ds=$(awk '$4 == "DS" { print $5, $6, $7, $8; exit }' "$ANCHOR")
  [[ -n "$ds" ]] || { echo "no DS in $ANCHOR" >&2; exit 1; }
  sed -e "s#root-hints: \"$HIER/root.hints\"#root-hints: \"$SHIER/root.hints\"#" \
      -e 's#module-config: "iterator"#module-config: "validator iterator"\n    trust-anchor-file: "'"$ANCHOR"'"#' \
      "$C/unbound.conf" >"$C/unbound-val.conf"
  mkdir -p "$C/pdns-val"
  sed -e "s#^hint-file=.*#hint-file=$SHIER/root.hints#" -e 's#^dnssec=off#dnssec=validate#' "$C/recursor.conf" >"$C/pdns-val/recursor.conf"
  echo "lua-config-file=$C/pdns-val/recursor.lua" >>"$C/pdns-val/recursor.conf"
  printf 'clearTA()\naddTA(".", "%s")\n' "$ds" >"$C/pdns-val/recursor.lua"
  sed -e "s#trust_anchors.remove('.')#trust_anchors.remove('.')\ntrust_anchors.add('. IN DS $ds')#" \
      -e "s#a.root.'] = '127.55.0.1'#a.root.'] = '127.56.0.1'#" -e 's/no DNSSEC/DNSSEC validation on the signed hierarchy/' \
      "$C/kresd.conf" >"$C/kresd-val.conf"
  grep -q 'validator iterator' "$C/unbound-val.conf" && grep -q "127.56.0.1" "$C/kresd-val.conf" &&
    grep -q "trust_anchors.add" "$C/kresd-val.conf" && grep -q "dnssec=validate" "$C/pdns-val/recursor.conf" ||
    { echo "could not write the validating configurations" >&2; exit 1; }
}
write_configs

# ---- servers -------------------------------------------------------------------------------
SRV_PID=
SRV_LOG=
enc_port() { # enc_port dot|doh SERVER: the port of that encrypted listener (empty: none)
  case "$1" in
    dot) echo "${DOT_PORT[$2]:-}" ;;
    doh) echo "${DOH_PORT[$2]:-}" ;;
  esac
}
start_server() { # [ENC=dot|doh|val] start_server NAME [extra juris args...]; sets SRV_PID, fails if it does not bind
  # (ENC=val: the signed hierarchy with validation on; the server juris-noval is juris on it with validation off)
  local name=$1 x=""; shift
  [[ -n "${ENC:-}" ]] && x=-$ENC
  SRV_LOG="$WORK/run/$name.log"
  case "$name" in
    echo) spawn 1 "$SRV_LOG" "$WORK/echo" "$ADDR" "${PORT[echo]}" ;;
    juris) spawn 1 "$SRV_LOG" "$JURIS" serve --config "$C/juris$x.toml" --threads 1 --data-dir "$WORK/run/juris-data" "$@" ;;
    juris-noval) spawn 1 "$SRV_LOG" "$JURIS" serve --config "$C/juris-noval.toml" --threads 1 --data-dir "$WORK/run/juris-data" "$@" ;;
    unbound) spawn 1 "$SRV_LOG" unbound -d -c "$C/unbound$x.conf" ;;
    pdns) spawn 1 "$SRV_LOG" pdns_recursor --config-dir="$C${x:+/pdns$x}" ;;
    kresd) rm -rf "$WORK/run/kresd"; mkdir -p "$WORK/run/kresd"
           spawn 1 "$SRV_LOG" kresd -n -c "$C/kresd$x.conf" "$WORK/run/kresd" ;;
  esac
  SRV_PID=$SPAWNED
  if ! wait_udp "$ADDR" "${PORT[$name]}" "$SRV_PID" "${START_TIMEOUT:-30}" ||
     { [[ -n "$x" && "$x" != -val && "$x" != -nomine && "$x" != -w8 ]] && ! wait_udp "$ADDR" "$(enc_port "$ENC" "$name")" "$SRV_PID" "${START_TIMEOUT:-30}" tcp; }; then
    log "$name did not start${x:+ (with its ${ENC} listener)}; last lines of $SRV_LOG:"; tail -n 20 "$SRV_LOG" >&2
    stop_pid "$SRV_PID"; return 1
  fi
}

# ---- one measurement -----------------------------------------------------------------------
TSV="$WORK/out/results.tsv"
: >"$TSV"
# measure WORKLOAD ROUND SERVER PID SOURCES -- dnsperf args...   (SOURCES: "-" = default source)
# Appends: workload round server qps sent completed lost avg_us p99_us cpu_s cpu_us_per_answer rcodes stat_s cpu_src
measure() {
  local wl=$1 round=$2 server=$3 pid=$4 sources=$5; shift 6
  local tag="$WORK/out/$wl.$server.$round" s n=0 dps=() b0 b1 b2 a0 a1 a2
  rm -f "$tag".*.txt
  local perf_pid=
  # W3's variants (nopolicy, policy-N) are juris too; each gets its own profile.
  local ptag=$wl; [[ "$wl" == W3-* || "$server" == juris-noval ]] && ptag="$wl.$server"
  if ((PROFILE)) && [[ "$server" == juris* || "$wl" == W3-* ]] && command -v perf >/dev/null; then
    taskset -c 0 perf record -q -e cpu-clock -F 999 --call-graph dwarf,8192 -p "$pid" \
      -o "$WORK/out/perf-$ptag.data" -- sleep "$DURATION" >"$WORK/out/perf-$ptag.log" 2>&1 &
    perf_pid=$!
    sleep 0.3
  fi
  read -r b0 b1 b2 < <(cpu_sample "$pid")
  for s in $sources; do
    n=$((n + 1))
    # "@N@" in an argument becomes the source's number (1, 2, ...): per-source query files.
    if [[ "$s" == - ]]; then
      taskset -c 0 dnsperf -s "$ADDR" "${@//@N@/$n}" -v >"$tag.$n.txt" 2>&1 &
    else
      taskset -c 0 dnsperf -s "$ADDR" -a "$s" "${@//@N@/$n}" -v >"$tag.$n.txt" 2>&1 &
    fi
    dps+=($!)
  done
  for s in "${dps[@]}"; do wait "$s" || true; done
  read -r a0 a1 a2 < <(cpu_sample "$pid")
  # Server CPU: utime+stime from /proc/PID/stat (10 ms ticks) is the method; when no thread
  # started or exited during the run, the nanosecond per-thread sum gives the same figure
  # with more precision, and is used instead (column cpu_src says which).
  local sched_ns=-1
  [[ "$b1" == "$a1" ]] && sched_ns=$((a0 - b0))
  awk -v wl="$wl" -v round="$round" -v server="$server" -v ticks=$((a2 - b2)) -v hz="$CLK_TCK" -v sns="$sched_ns" '
    FNR == 1 { conn = 0 }
    /^> / { if ($NF ~ /^[0-9]+\.[0-9]+$/ && $2 != "T") { us = int($NF * 1e6 + 0.5); h[us]++; nl++; if (us > mx) mx = us } ; next }
    /Queries sent:/ { sent += $3 }
    /Queries completed:/ { done_ += $3 }
    /Queries lost:/ { lost += $3 }
    /Queries per second:/ { qps += $4 }
    /^Connection Statistics:/ { conn = 1 }   # TCP/DoT: a second "Average Latency" (connection set-up) follows
    /Average Latency \(s\):/ && !conn { lat += $4 * 1e6 * last_done }
    /Queries completed:/ { last_done = $3 }
    /Response codes:/ { sub(/.*Response codes: */, ""); n = split($0, parts, ", ");
                        for (i = 1; i <= n; i++) { split(parts[i], kv, " "); rc[kv[1]] += kv[2] } }
    END {
      p99 = -1
      if (nl > 0) { want = nl * 0.99; c = 0; for (i = 0; i <= mx; i++) if (i in h) { c += h[i]; if (c >= want) { p99 = i; break } } }
      stat_s = ticks / hz; cpu = stat_s; src = "stat"
      if (sns >= 0) { cpu = sns / 1e9; src = "schedstat" }
      codes = ""; for (k in rc) codes = codes (codes == "" ? "" : ",") k "=" rc[k]
      if (codes == "") codes = "-"
      printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%.1f\t%d\t%.4f\t%.3f\t%s\t%.2f\t%s\n", wl, round, server, qps, sent, done_, lost,
             (done_ > 0 ? lat / done_ : -1), p99, cpu, (done_ > 0 ? cpu * 1e6 / done_ : -1), codes, stat_s, src
    }' "$tag".*.txt | tee -a "$TSV" >&2
  if [[ -n "$perf_pid" ]]; then
    wait "$perf_pid" || true
    perf report -i "$WORK/out/perf-$ptag.data" --no-children --sort symbol --stdio -g none --percent-limit 0.5 \
      >"$WORK/out/perf-$ptag.txt" 2>/dev/null || true
    perf report -i "$WORK/out/perf-$ptag.data" --children --sort symbol --stdio -g none --percent-limit 2 \
      >"$WORK/out/perf-$ptag.children.txt" 2>/dev/null || true
    log "  perf profile of juris: $WORK/out/perf-$ptag.txt (self) and perf-$ptag.children.txt (inclusive)"
  fi
  # The per-query lines are large: keep only the summaries.
  for s in "$tag".*.txt; do grep -v '^> ' "$s" >"$s.summary" || true; rm -f "$s"; done
}

dnsperf_common() { echo "-p ${2:-${PORT[$1]}} -c $CLIENTS -q $OUTSTANDING -t 5"; }   # SERVER [PORT]

warm() { # warm SERVER [dnsperf args]: every hot name twice, unmeasured (W1-DNSSEC: -D, as it is measured)
  local out="$WORK/out/warm.$1.txt" srv=$1; shift
  taskset -c 0 dnsperf -s "$ADDR" -p "${PORT[$srv]}" -d "$W1_FILE" -n 2 -l 60 -c 4 -q 50 -t 5 "$@" >"$out" 2>&1 || true
  set -- "$srv"
  local ok ns; ok=$(awk '/Response codes:/ { print }' "$out")
  ns=$( { dig +short +time=2 +tries=1 -p "${PORT[$1]}" @"$ADDR" . NS 2>&1 || true; } | tr '\n' ' ')
  log "  warm $1: $ok; '. NS' -> $ns"
  [[ "$ns" == "a.root. " ]] || log "  WARNING: $1 does not see the local root (. NS -> '$ns')"
}

enc_probe() { # enc_probe dot|doh SERVER: '. NS' over DoT / DoH must come back from the local root (a.root.)
  local enc=$1 port out flag label
  port=$(enc_port "$1" "$2")
  case "$enc" in dot) flag=+tls; label=DoT ;; *) flag=+https; label=DoH ;; esac
  if command -v kdig >/dev/null; then
    out=$(timeout 10 kdig "$flag" +short +time=3 +retry=0 -p "$port" @"$ADDR" . NS 2>&1 | tr '\n' ' ') || true
    log "  $label probe $2 ($ADDR:$port, kdig $flag): '. NS' -> $out"
    [[ "$out" == "a.root. " ]]
  else # no kdig (knot-dnsutils): one dnsperf query, which shows the rcode only
    printf '. NS\n' >"$WORK/out/enc-probe.txt"
    out=$(timeout 20 taskset -c 0 dnsperf -s "$ADDR" -p "$port" -m "$enc" -d "$WORK/out/enc-probe.txt" -n 1 -t 3 -v 2>&1) || true
    log "  $label probe $2 ($ADDR:$port, dnsperf -m $enc): $(grep -m1 '^> ' <<<"$out" || echo 'no answer')"
    grep -q '^> NOERROR' <<<"$out"
  fi
}

not_started() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "did not start (see bench/work/run/$3.log)" >>"$WORK/out/notes.tsv"; }

rotated() { # rotated ROUND [SERVER...]: the server list (default SERVER_LIST), rotated so no server is always first
  local r=$1 i; shift
  local list=("$@"); ((${#list[@]})) || list=("${SERVER_LIST[@]}")
  local n=${#list[@]}
  for ((i = 0; i < n; i++)); do printf '%s ' "${list[$(((i + r) % n))]}"; done
}

# ---- workloads -----------------------------------------------------------------------------
w0() {
  local r
  for ((r = 1; r <= RUNS; r++)); do
    start_server echo || return 0
    # shellcheck disable=SC2046
    measure W0 "$r" echo "$SRV_PID" - -- $(dnsperf_common echo) -d "$W1_FILE" -l "$DURATION"
    stop_pid "$SRV_PID"
  done
}

w1_like() { # w1_like WORKLOAD MODE (udp, tcp, dot, doh = DoH GET, doh-post): W1's names; the cache is always warmed over UDP
  local wl=$1 mode=$2 r s enc="" label port extra=()
  case "$mode" in
    dot) enc=dot; label=DoT ;;
    doh) enc=doh; label=DoH; extra=(-O doh-method=GET) ;;
    doh-post) enc=doh; label=DoH; extra=(-O doh-method=POST); mode=doh ;;
  esac
  if [[ -n "$enc" ]] && ! make_cert; then
    log "$wl skipped: no certificate for the $label listeners"
    printf '%s\t-\t-\tskipped: could not make a TLS certificate\n' "$wl" >>"$WORK/out/notes.tsv"
    return 0
  fi
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(rotated "$r"); do
      port=${PORT[$s]}
      if [[ -n "$enc" ]]; then
        port=$(enc_port "$enc" "$s")
        if [[ -z "$port" ]]; then   # e.g. PowerDNS Recursor 4.8: no incoming DoT or DoH
          if ((r == 1)); then
            local na="n/a (no $label)"
            if [[ "$enc" == dot ]]; then na=${DOT_NA[$s]:-$na}; else na=${DOH_NA[$s]:-$na}; fi
            log "$wl: $s $na"
            printf '%s\tna\t%s\t%s\n' "$wl" "$s" "$na" >>"$WORK/out/notes.tsv"
          fi
          continue
        fi
      fi
      log "$wl round $r: $s"
      ENC=$enc start_server "$s" || { not_started "$wl" "$r" "$s"; continue; }
      warm "$s"
      if [[ -n "$enc" ]] && ! enc_probe "$enc" "$s"; then
        log "  $s does not answer '. NS' over $label on $ADDR:$port: not measured"
        printf '%s\t%s\t%s\t%s\n' "$wl" "$r" "$s" "no answer to '. NS' over $label on port $port (see bench/work/run/$s.log)" >>"$WORK/out/notes.tsv"
        stop_pid "$SRV_PID"; continue
      fi
      # shellcheck disable=SC2046
      measure "$wl" "$r" "$s" "$SRV_PID" - -- $(dnsperf_common "$s" "$port") -m "$mode" ${extra[@]+"${extra[@]}"} -d "$W1_FILE" -l "$DURATION"
      stop_pid "$SRV_PID"
    done
  done
}

w2() {
  local r s
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(rotated "$r"); do
      log "W2 round $r: $s (cold start, $(wc -l <"$W2_FILE") names, one pass)"
      start_server "$s" || { not_started W2 "$r" "$s"; continue; }
      # shellcheck disable=SC2046
      measure W2 "$r" "$s" "$SRV_PID" - -- $(dnsperf_common "$s") -d "$W2_FILE" -n 1 -l 120
      stop_pid "$SRV_PID"
    done
  done
}

# ---- W1-DNSSEC, W2-DNSSEC: the signed hierarchy, validation on ---------------------------------
# Every server runs with its "-val" configuration (validation on, the hierarchy's own root DS as the
# only anchor); "juris-noval" is juris on the same signed hierarchy with [dnssec] enabled = false,
# the reference for what validation costs juris. Before the first round each server is started
# once and must validate (dnssec_check); a server that does not is not measured.
DNSSEC_SERVERS=()
DIG_STATUS=
dig_flags() { # dig_flags SERVER NAME TYPE -> "STATUS flags... (N bytes)" of dig +dnssec through SERVER
  dig +dnssec +time=5 +tries=2 -p "${PORT[$1]}" @"$ADDR" "$2" "$3" 2>/dev/null |
    awk '/^;; ->>HEADER<<-/ { s = $6; sub(/,$/, "", s) } /^;; flags:/ { sub(/^;; flags: /, ""); sub(/;.*/, ""); f = $0 }
         /^;; MSG SIZE/ { n = " (" $NF " bytes)" } END { print (s == "" ? "NOANSWER" : s) " " f n }'
}
dnssec_check() { # dnssec_check SERVER: a validating server must give AD for signed data and SERVFAIL for bogus.com.
  local s=$1 name want got ok=0 wl=W2-DNSSEC
  has_workload W2-DNSSEC || wl=W1-DNSSEC
  # zone0.com is signed with NSEC, zone1.com with NSEC3 (gen.py signing_of); nxcheck.* do not exist.
  for probe in "h1.zone0.com A NOERROR" "h1.zone1.com A NOERROR" "nxcheck.zone0.com A NXDOMAIN" \
               "nxcheck.zone1.com A NXDOMAIN" "www.bogus.com A SERVFAIL"; do
    read -r name _ want <<<"$probe"
    got=$(dig_flags "$s" "$name" A)
    local expect="$want ad"
    [[ "$want" == SERVFAIL ]] && expect="SERVFAIL"
    if [[ "$s" == juris-noval ]]; then expect="${want/SERVFAIL/NOERROR} no ad"; fi
    local pass=1 st=${got%% *} fl=" ${got#* }"; fl="${fl% (*} "
    [[ "$st" == "${expect%% *}" ]] || pass=0
    case "$expect" in *" no ad") [[ "$fl" != *" ad "* ]] || pass=0 ;; *" ad") [[ "$fl" == *" ad "* ]] || pass=0 ;; esac
    log "  dnssec check $s: $name -> $got (want $expect) $([[ $pass == 1 ]] && echo ok || echo FAILED)"
    printf '%s\t-\t%s\tdnssec_check\t%s\t%s\n' "$wl" "$s" "$s: dig +dnssec $name A (want $expect)" "$got$([[ $pass == 1 ]] && echo ' ok' || echo ' FAILED')" >>"$WORK/out/w4.tsv"
    ((pass)) || ok=1
  done
  return "$ok"
}
dnssec_setup() { # once per run: which servers validate (juris-noval: which really does not)
  ((${#DNSSEC_SERVERS[@]})) && return 0
  local s cand=("${SERVER_LIST[@]}")
  [[ " ${SERVER_LIST[*]} " == *" juris "* ]] && cand+=(juris-noval)
  for s in "${cand[@]}"; do
    log "DNSSEC check: $s (validating configuration, signed hierarchy)"
    ENC=val start_server "$s" || { not_started W2-DNSSEC - "$s"; continue; }
    if dnssec_check "$s"; then DNSSEC_SERVERS+=("$s")
    else printf '%s\t-\t%s\t%s\n' W2-DNSSEC "$s" "failed the validation check (see the checks table): not measured" >>"$WORK/out/notes.tsv"; fi
    stop_pid "$SRV_PID"
  done
}
dnssec_after() { # dnssec_after WL ROUND SERVER: a name of the pass, now cached, still comes with AD
  local name got want="ad"; name=$(awk 'NR == 2 { print $1 }' "$2")
  [[ "$4" == juris-noval ]] && want="no ad"
  got=$(dig_flags "$4" "$name" A)
  printf '%s\t%s\t%s\tafter_run\t%s\t%s\n' "$1" "$3" "$4" "$4: dig +dnssec $name A (want $want)" "$got" >>"$WORK/out/w4.tsv"
}
w_dnssec() { # w_dnssec W1-DNSSEC|W2-DNSSEC
  local wl=$1 r s
  dnssec_setup
  ((${#DNSSEC_SERVERS[@]})) || { log "$wl: no server passed the validation check"; return 0; }
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(rotated "$r" "${DNSSEC_SERVERS[@]}"); do
      ENC=val start_server "$s" || { not_started "$wl" "$r" "$s"; continue; }
      if [[ "$wl" == W2-DNSSEC ]]; then
        log "$wl round $r: $s (cold start, $(wc -l <"$W2_FILE") names, one pass, validating)"
        # shellcheck disable=SC2046
        measure "$wl" "$r" "$s" "$SRV_PID" - -- $(dnsperf_common "$s") -d "$W2_FILE" -n 1 -l 120
        dnssec_after "$wl" "$W2_FILE" "$r" "$s"
      else
        log "$wl round $r: $s (cache hits, DO=1, validating)"
        warm "$s" -D
        # shellcheck disable=SC2046
        measure "$wl" "$r" "$s" "$SRV_PID" - -- $(dnsperf_common "$s") -D -d "$W1_FILE" -l "$DURATION"
        dnssec_after "$wl" "$W1_FILE" "$r" "$s"
      fi
      stop_pid "$SRV_PID"
    done
  done
}

# ---- W5: cold cache, authoritative servers delayed by tc netem ----------------------------------
W5_FILE="$WORK/w5.txt"
W5_ERR=
W5_SETUP=                        # description for the report (set when W5 ran)
netem_on() { # installs W5_TC on lo; on failure removes what it added and sets W5_ERR
  local c err cfg
  if ! command -v tc >/dev/null 2>&1; then W5_ERR="tc not found (apt-get install -y iproute2)"; return 1; fi
  if ((EUID != 0)); then W5_ERR="tc on lo needs root"; return 1; fi
  local before; before=$(lo_qdiscs)
  if ! grep -q '^qdisc noqueue 0: root' <<<"$before"; then
    W5_ERR="lo already has a root qdisc that is not ours ($(sed -n 1p <<<"$before")): left alone"; return 1
  fi
  if command -v modprobe >/dev/null 2>&1; then modprobe -q sch_prio 2>/dev/null || true; modprobe -q sch_netem 2>/dev/null || true; fi
  for c in "${W5_TC[@]}"; do
    # shellcheck disable=SC2086
    if ! err=$(tc $c 2>&1); then
      W5_ERR="'tc $c' failed: $(tr '\n' ' ' <<<"$err" | sed 's/ *$//')"
      if [[ -r /proc/config.gz ]] && command -v zcat >/dev/null 2>&1; then
        cfg=$(zcat /proc/config.gz | grep -E '^(# )?CONFIG_NET_SCH_(PRIO|NETEM)[ =]' | sed 's/^# //; s/ is not set/ not set/' | paste -sd, - | sed 's/,/, /g') || true
        W5_ERR+=" (kernel $(uname -r): ${cfg:-no CONFIG_NET_SCH_* lines}$([[ -d /lib/modules/$(uname -r) ]] || echo ', no modules to load'))"
      fi
      netem_off
      return 1
    fi
  done
  log "W5: tc netem on lo: $W5_NET0 delayed $W5_DELAY0 (normal), $W5_NET1 delayed $W5_DELAY1 (normal); nothing else"
}
dig_ms() { { dig +time=3 +tries=1 "$@" 2>/dev/null || true; } | awk '/^;; Query time:/ { print $4 }'; }
netem_pkts() { # netem_pkts HANDLE -> "N pkt, D dropped" from tc -s
  { tc -s qdisc show dev lo 2>/dev/null || true; } | awk -v h="$1:" '$1 == "qdisc" { on = ($3 == h) }
    on && $1 == "Sent" { d = $7; sub(/,/, "", d); print $4 " pkt, " d " dropped"; exit }'
}
w5_verify() { # the delay must be in effect towards NSD: 3 x dig +norec per tier, min >= half the delay
  local tier a q delay t ts min i ok=0
  for tier in 0 1; do
    if ((tier == 0)); then a="${W5_NET0%0/24}1"; q=". NS"; delay=${W5_DELAY0%%ms*}
    else a="${W5_NET1%0/24}1"; q="h0.zone0.com A"; delay=${W5_DELAY1%%ms*}; fi
    ts=""; min=999999
    for i in 1 2 3; do
      # shellcheck disable=SC2086
      t=$(dig_ms +norec @"$a" $q)
      [[ "$t" =~ ^[0-9]+$ ]] || t=-1
      ts+="${ts:+ }$t"
      if ((t < min)); then min=$t; fi
    done
    printf 'W5\t-\t-\tnsd_query_ms\t%s\t%s\n' "dig +norec @$a $q (netem ${delay} ms)" "$ts" >>"$WORK/out/w4.tsv"
    log "W5: dig +norec @$a $q: $ts ms (netem delay $delay ms)"
    if ((min < delay / 2)); then W5_ERR="delay not in effect: dig @$a took $ts ms, netem $delay ms"; ok=1; fi
  done
  return "$ok"
}

w5() {
  local r s t a first delay0=${W5_DELAY0%%ms*}
  for a in "${NSD_ADDRS[@]}"; do
    if [[ "$a" != "${W5_NET0%0/24}"* && "$a" != "${W5_NET1%0/24}"* ]]; then
      log "W5 skipped: NSD address $a is outside $W5_NET0 and $W5_NET1"
      printf 'W5\t-\t-\tskipped: NSD address %s outside the delayed ranges %s, %s\n' "$a" "$W5_NET0" "$W5_NET1" >>"$WORK/out/notes.tsv"
      return 0
    fi
  done
  awk -v n="$W5_NAMES" 'NR % 5 == 0 && ++k <= n' "$HIER/w2.txt" >"$W5_FILE"
  if ! netem_on; then
    log "W5 skipped: $W5_ERR"
    printf 'W5\t-\t-\tskipped: %s\n' "$W5_ERR" >>"$WORK/out/notes.tsv"
    return 0
  fi
  if ! w5_verify; then
    netem_off
    log "W5 skipped: $W5_ERR"
    printf 'W5\t-\t-\tskipped: %s\n' "$W5_ERR" >>"$WORK/out/notes.tsv"
    return 0
  fi
  W5_SETUP="$(wc -l <"$W5_FILE") names (every 5th line of w2.txt), one pass at dnsperf -Q $W5_RATE, cold cache; tc netem on lo: $W5_NET0 (root, TLDs) $W5_DELAY0 normal, $W5_NET1 (second-level zones) $W5_DELAY1 normal; client ↔ resolver ($ADDR) not delayed"
  first=$(awk 'NR == 1 { print $1 }' "$W5_FILE")
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(rotated "$r"); do
      log "W5 round $r: $s (cold start, $(wc -l <"$W5_FILE") names at $W5_RATE qps, NSD delayed)"
      start_server "$s" || { not_started W5 "$r" "$s"; continue; }
      # shellcheck disable=SC2046
      measure W5 "$r" "$s" "$SRV_PID" - -- $(dnsperf_common "$s") -Q "$W5_RATE" -d "$W5_FILE" -n 1 -l 120
      # The client path must not be delayed: a cache hit (the first name again) answers at once
      # (the faster of two digs: dig reports whole ms and the machine is shared).
      t=$( { dig_ms -p "${PORT[$s]}" @"$ADDR" "$first" A; dig_ms -p "${PORT[$s]}" @"$ADDR" "$first" A; } | sort -n | sed -n 1p)
      if ! [[ "$t" =~ ^[0-9]+$ ]] || ((t >= delay0 / 2)); then
        log "  WARNING: a cache hit from $s took '${t}' ms: is the client path delayed?"
        t="${t:-no answer} (WARNING: client path delayed?)"
      fi
      printf 'W5\t%s\t%s\tcache_hit_ms\t%s\t%s\n' "$r" "$s" "$s: dig -p ${PORT[$s]} @$ADDR $first A (cache hit after the run)" "$t" >>"$WORK/out/w4.tsv"
      stop_pid "$SRV_PID"
    done
  done
  printf 'W5\t-\t-\tnetem_packets\t554: %s\t%s\n' "$W5_NET0 (sent to NSD, delayed)" "$(netem_pkts 554)" >>"$WORK/out/w4.tsv"
  printf 'W5\t-\t-\tnetem_packets\t555: %s\t%s\n' "$W5_NET1 (sent to NSD, delayed)" "$(netem_pkts 555)" >>"$WORK/out/w4.tsv"
  netem_off
  log "W5: netem qdisc removed from lo"
}

POLICY_OK=0
policy_check() {
  if "$JURIS" serve --help 2>&1 | grep -q -- '--orders'; then POLICY_OK=1; return 0; fi
  log "W3/W4 skipped: '$JURIS serve --help' has no --orders flag yet (policy flags not merged)"
  printf 'W3\t-\tjuris\tskipped: juris serve has no --orders flag yet\n' >>"$WORK/out/notes.tsv"
  printf 'W4\t-\tjuris\tskipped: juris serve has no --orders flag yet\n' >>"$WORK/out/notes.tsv"
  return 1
}

POLICY_DIR="$WORK/policy"
make_policy() { # make_policy NAMES -> $POLICY_DIR/orders-NAMES, $POLICY_DIR/geo.mmdb
  mkdir -p "$POLICY_DIR"
  [[ -f "$POLICY_DIR/geo.mmdb" ]] || python3 "$HERE/lib/gen.py" mmdb "$POLICY_DIR/geo.mmdb" \
    127.0.0.101=IT 127.0.0.102=DE 127.0.0.103=FR >&2
  local d="$POLICY_DIR/orders-$1"
  if [[ ! -f "$d/.done" ]]; then
    rm -rf "$d"
    python3 "$HERE/lib/gen.py" orders "$d" --names "$1" --hot "$W1_FILE" >&2
    touch "$d/.done"
  fi
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Starts juris (optionally with policy), waits for the first answer; records start→answer time.
START_MS=0
start_juris_policy() { # start_juris_policy NAMES|0
  local names=$1 t0 t1 i
  local extra=()
  if [[ "$names" != 0 ]]; then extra=(--orders "$POLICY_DIR/orders-$names" --geoip "$POLICY_DIR/geo.mmdb"); fi
  t0=$(date +%s%N)
  START_TIMEOUT=180 start_server juris "${extra[@]+"${extra[@]}"}" || return 1
  for ((i = 0; i < 1800; i++)); do
    dig +short +time=1 +tries=1 -p "${PORT[juris]}" @"$ADDR" a.root. A >/dev/null 2>&1 && break
    sleep 0.1
  done
  t1=$(date +%s%N)
  START_MS=$(((t1 - t0) / 1000000))
}

w3() {
  ((POLICY_OK)) || return 0
  local sizes=(1000000) r v names
  ((QUICK)) && sizes=(100000)
  ((W3_10M)) && sizes+=(10000000)
  for names in "${sizes[@]}"; do make_policy "$names"; done
  # W2 under W3: the names are split over the 4 client addresses, so each is still asked once.
  local k
  for k in 1 2 3 4; do awk -v k="$k" 'NR % 4 == k % 4' "$W2_FILE" >"$WORK/w2-part$k.txt"; done
  for ((r = 1; r <= RUNS; r++)); do
    for v in 0 "${sizes[@]}"; do
      local label="nopolicy"; [[ "$v" != 0 ]] && label="policy-$v"
      log "W3 round $r: juris $label (W1 from 4 client addresses)"
      start_juris_policy "$v" || continue
      # W4's start-up and memory figures, taken during W3 (first field W3: they belong to W3's results file)
      printf 'W3\t%s\tjuris\tstart_ms\t%s\t%s\n' "$r" "$label" "$START_MS" >>"$WORK/out/w4.tsv"
      warm juris
      # shellcheck disable=SC2046
      measure W3-W1 "$r" "$label" "$SRV_PID" "$COUNTRY_SOURCES" -- -p "${PORT[juris]}" -c 2 -q 50 -t 5 -d "$W1_FILE" -l "$DURATION"
      printf 'W3\t%s\tjuris\trss_kib\t%s\t%s\n' "$r" "$label" "$(rss_kib "$SRV_PID")" >>"$WORK/out/w4.tsv"
      stop_pid "$SRV_PID"
      log "W3 round $r: juris $label (W2 cold, 4 client addresses)"
      start_juris_policy "$v" || continue
      # shellcheck disable=SC2046
      measure W3-W2 "$r" "$label" "$SRV_PID" "$COUNTRY_SOURCES" -- -p "${PORT[juris]}" -c 2 -q 50 -t 5 -d "$WORK/w2-part@N@.txt" -n 1 -l 120
      stop_pid "$SRV_PID"
      [[ "$v" == 0 ]] || continue
      # The same cold pass with candidate mining off: what mining costs W2 (target <= 2%).
      log "W3 round $r: juris nopolicy-nomine (W2 cold, candidates.enabled = false)"
      ENC=nomine start_juris_policy 0 || continue
      # shellcheck disable=SC2046
      measure W3-W2 "$r" "nopolicy-nomine" "$SRV_PID" "$COUNTRY_SOURCES" -- -p "${PORT[juris]}" -c 2 -q 50 -t 5 -d "$WORK/w2-part@N@.txt" -n 1 -l 120
      stop_pid "$SRV_PID"
    done
  done
}

w4() {
  ((POLICY_OK)) || return 0
  local names=1000000; ((QUICK)) && names=100000
  make_policy "$names"
  local live="$WORK/policy/live"
  # -p: the order files keep their (old) modification times, as files in service do; files
  # changed in the last 2 s are re-read and hashed on every load (docs/orders.md, "racy" files).
  rm -rf "$live"; cp -rp "$POLICY_DIR/orders-$names" "$live"; rm -f "$live/.done"
  # Start with the live copy (so we can change it).
  local t0 t1 i r
  t0=$(date +%s%N)
  START_TIMEOUT=180 start_server juris --orders "$live" --geoip "$POLICY_DIR/geo.mmdb" || return 0
  warm juris
  printf 'W4\t1\tjuris\trss_kib_live\t%s\t%s\n' "$names" "$(rss_kib "$SRV_PID")" >>"$WORK/out/w4.tsv"
  # One added name: how long until an IT client sees it blocked.
  local name=h500.zone5.net
  dig +short -b 127.0.0.101 -p "${PORT[juris]}" @"$ADDR" "$name" A >/dev/null || true
  python3 "$HERE/lib/gen.py" order-one "$live/BENCH-ADD.json" BENCH-ADD IT "$name"
  t0=$(date +%s%N)
  r=timeout
  local deadline=$((t0 + 30000000000))
  while (($(date +%s%N) < deadline)); do
    if dig +time=1 +tries=1 -b 127.0.0.101 -p "${PORT[juris]}" @"$ADDR" "$name" A 2>/dev/null | grep -q 'status: NXDOMAIN'; then
      t1=$(date +%s%N); r=$(((t1 - t0) / 1000000)); break
    fi
    sleep 0.01
  done
  printf 'W4\t1\tjuris\tadd_one_ms\t%s\t%s\n' "$names" "$r" >>"$WORK/out/w4.tsv"
  # Lost queries while a new policy is swapped in under load: rewrite one big order mid-run.
  log "W4: swap under load (20k qps from IT, DE order rewritten after 3 s)"
  (sleep 3; cp "$live/BENCH-DE.json" "$live/.tmp"; sed -i 's/"authority":"juris bench"/"authority":"juris bench v2"/' "$live/.tmp"; mv "$live/.tmp" "$live/BENCH-DE.json") &
  local changer=$!
  measure W4-swap 1 juris "$SRV_PID" 127.0.0.101 -- -p "${PORT[juris]}" -c 4 -q 100 -t 2 -Q 20000 -d "$W1_FILE" -l 10
  wait "$changer" || true
  measure W4-noswap 1 juris "$SRV_PID" 127.0.0.101 -- -p "${PORT[juris]}" -c 4 -q 100 -t 2 -Q 20000 -d "$W1_FILE" -l 10
  cp "$SRV_LOG" "$WORK/out/w4-juris.log"
  stop_pid "$SRV_PID"
}

# ---- W8: random-subdomain flood from one client while another asks W1's hot names ------------------
# Before round 1 (unless --w8-rate): juris's cold capacity on the flood's own kind of names, one pass of
# distinct nx-names of the victim zone with dnsperf (-c 8 -q 200, as W2), juris in its plain configuration:
# capacity = answers per CPU-second of juris (1e6 / CPU-µs per answer), i.e. the rate at which its CPU
# would be saturated. Then per round and server (its -w8 configuration, cache warmed): W1 from W8_LEGIT
# alone for DURATION, then W1 again while flood.c sends W8_FACTOR x capacity from W8_FLOODER (started a
# second before, ending a second after). Recorded: both W1 rows, the flood's answer mix, VmHWM (peak
# RSS since start), whether the server survived (alive and answering, no panic in its log).
W8_FLOOD_RATE=
w8_capacity() {
  if [[ -n "$W8_RATE" ]]; then W8_FLOOD_RATE=$W8_RATE; return 0; fi
  local names=$((60000 * DURATION)) row cpu_us qps
  awk -v n="$names" -v z="$W8_VICTIM" 'BEGIN { srand(8); for (i = 0; i < n; i++) printf "nx-cap%d-%06x.%s A\n", i, int(rand() * 16777216), z }' >"$WORK/w8-capacity.txt"
  rm -rf "$WORK/run/juris-data"
  log "W8: juris's cold capacity on nx-<random>.$W8_VICTIM (plain configuration, one pass, dnsperf -c $CLIENTS -q $OUTSTANDING)"
  start_server juris || { not_started W8 - juris; return 1; }
  # shellcheck disable=SC2046
  measure W8-capacity 0 juris "$SRV_PID" "$W8_FLOODER" -- $(dnsperf_common juris) -d "$WORK/w8-capacity.txt" -n 1 -l "$DURATION"
  stop_pid "$SRV_PID"
  row=$(awk -F'\t' '$1 == "W8-capacity" { r = $0 } END { print r }' "$TSV")
  qps=$(cut -f4 <<<"$row"); cpu_us=$(cut -f11 <<<"$row")
  # Within the quota: queries per CPU-second × the quota's share of a CPU.
  W8_FLOOD_RATE=$(awk -v c="$cpu_us" -v q="$qps" -v f="$W8_FACTOR" -v p="$W8_CPU" 'BEGIN { cap = (c > 0 ? 1e6 / c : 0); if (q > cap) cap = q; printf "%d", cap * f * p / 100 }')
  printf 'W8\t-\tjuris\tcapacity\t%s\t%s\n' "dnsperf qps $qps, CPU-µs/answer $cpu_us: 1e6 / CPU-µs = queries per CPU-second; flood = ${W8_FACTOR}× that × the quota ($W8_CPU % of a CPU)" \
    "$(awk -v c="$cpu_us" 'BEGIN { printf "%d", (c > 0 ? 1e6 / c : 0) }')" >>"$WORK/out/w4.tsv"
  ((W8_FLOOD_RATE > 0)) || { log "W8: no capacity measured"; printf 'W8\t-\tjuris\tno cold capacity measured\n' >>"$WORK/out/notes.tsv"; return 1; }
}
w8_after() { # w8_after ROUND SERVER PID: peak RSS, survival
  local r=$1 s=$2 pid=$3 hwm alive=no ans
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo -1)
  if kill -0 "$pid" 2>/dev/null; then
    ans=$(dig +short +time=2 +tries=2 -b "$W8_LEGIT" -p "${PORT[$s]}" @"$ADDR" "$(awk 'NR == 1 { print $1 }' "$W1_FILE")" A 2>/dev/null | head -n1)
    if [[ -n "$ans" ]]; then alive=yes; else alive="no answer after the flood"; fi
  else
    alive="process gone"
  fi
  if grep -qi 'panicked\|segmentation\|assertion' "$SRV_LOG"; then alive="$alive; crash in the log ($(grep -m1 -i 'panicked\|segmentation\|assertion' "$SRV_LOG" | cut -c1-120))"; fi
  printf 'W8\t%s\t%s\trss_peak_kib\tVmHWM\t%s\n' "$r" "$s" "${hwm:--1}" >>"$WORK/out/w4.tsv"
  printf 'W8\t%s\t%s\talive\tafter the flood\t%s\n' "$r" "$s" "$alive" >>"$WORK/out/w4.tsv"
  log "  $s: peak RSS ${hwm} KiB, alive: $alive"
}
w8_measure() { # w8_measure alone|flood ROUND SERVER: W1 from the legitimate client, CPU 0's busy share recorded
  local b a
  read -r -a b < <(cpu0_ticks)
  # shellcheck disable=SC2046
  measure "W8-$1" "$2" "$3" "$SRV_PID" "$W8_LEGIT" -- $(dnsperf_common "$3") -d "$W1_FILE" -l "$DURATION"
  read -r -a a < <(cpu0_ticks)
  printf 'W8\t%s\t%s\tcpu0_busy\t%s\t%s\n' "$2" "$3" "$1" \
    "$(awk -v b="$((a[0] - b[0]))" -v t="$((a[1] - b[1]))" 'BEGIN { printf "%.1f", (t > 0 ? b * 100 / t : -1) }')" >>"$WORK/out/w4.tsv"
}
w8() {
  local r s fpid fout list=() want
  for want in $W8_SERVERS; do
    for s in "${SERVER_LIST[@]}"; do [[ "$s" == "$want" ]] && list+=("$s"); done
  done
  ((${#list[@]})) || { log "W8: none of $W8_SERVERS asked for"; return 0; }
  for s in "${SERVER_LIST[@]}"; do
    [[ " $W8_SERVERS " == *" $s "* ]] || printf 'W8\tna\t%s\t%s\n' "$s" "n/a (W8 compares $W8_SERVERS)" >>"$WORK/out/notes.tsv"
  done
  if ((W8_CPU < 100)); then
    cg_setup "$W8_CPU" || { log "W8: cannot make a cgroup with a CPU quota (root and a cpu controller needed; --w8-cpu 100 runs without)"; printf 'W8\t-\t-\tno CPU quota possible (--w8-cpu 100 runs without)\n' >>"$WORK/out/notes.tsv"; return 0; }
  fi
  printf 'W8\t-\t-\tcpu_quota\tpercent of one CPU per server\t%s\n' "$W8_CPU" >>"$WORK/out/w4.tsv"
  w8_capacity || return 0
  log "W8: flood of nx-<random>.$W8_VICTIM at $W8_FLOOD_RATE qps from $W8_FLOODER, W1 from $W8_LEGIT"
  printf 'W8\t-\t-\tflood_rate\t%s\t%s\n' "${W8_RATE:+--w8-rate }${W8_RATE:-${W8_FACTOR}× the cold capacity}" "$W8_FLOOD_RATE" >>"$WORK/out/w4.tsv"
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(rotated "$r" "${list[@]}"); do
      log "W8 round $r: $s (W1 alone, then W1 under a flood of $W8_FLOOD_RATE qps)"
      rm -rf "$WORK/run/juris-data"
      ENC=w8 start_server "$s" || { not_started W8 "$r" "$s"; continue; }
      [[ -n "$CG_DIR" ]] && cg_add "$SRV_PID"
      warm "$s"
      w8_measure alone "$r" "$s"
      fout="$WORK/out/W8.flood.$s.$r.txt"
      taskset -c 0 "$WORK/flood" "$W8_FLOODER" "$ADDR" "${PORT[$s]}" "$W8_VICTIM" "$W8_FLOOD_RATE" $((DURATION + 2)) "$r$RANDOM" >"$fout" 2>&1 &
      fpid=$!
      sleep 1
      w8_measure flood "$r" "$s"
      wait "$fpid" || true
      printf 'W8\t%s\t%s\tflood\t%s\t%s\n' "$r" "$s" "$W8_FLOOD_RATE qps × $((DURATION + 2)) s from $W8_FLOODER" "$(tail -n1 "$fout")" >>"$WORK/out/w4.tsv"
      log "  flood: $(tail -n1 "$fout")"
      w8_after "$r" "$s" "$SRV_PID"
      stop_pid "$SRV_PID"
    done
  done
}

# ---- run -----------------------------------------------------------------------------------
: >"$WORK/out/w4.tsv"; : >"$WORK/out/notes.tsv"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if has_workload W3 || has_workload W4; then policy_check || true; fi
for w in "${WORKLOADS[@]}"; do
  case "$w" in
    W0) w0 ;;
    W1) w1_like W1 udp ;;
    W2) w2 ;;
    W3) w3 ;;
    W4) w4 ;;
    W5) w5 ;;
    W7-tcp) w1_like W7-tcp tcp ;;
    W7-dot) w1_like W7-dot dot ;;
    W7-doh) w1_like W7-doh doh ;;
    W7-doh-post) w1_like W7-doh-post doh-post ;;
    W1-DNSSEC|W2-DNSSEC) w_dnssec "$w" ;;
    W8) w8 ;;
    *) log "$w: not implemented in this harness (see README)"; printf '%s\t-\t-\tnot implemented\n' "$w" >>"$WORK/out/notes.tsv" ;;
  esac
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

versions() {
  if [[ -n "${JURIS_BIN:-}" ]]; then
    echo "juris: $("$JURIS" --version 2>&1 | head -n1) (prebuilt JURIS_BIN, built $(date -u -r "$JURIS" +%Y-%m-%dT%H:%MZ))"
  else
    echo "juris: $("$JURIS" --version 2>&1 | head -n1) ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- crates 2>/dev/null || echo ', work tree modified'))"
  fi
  echo "unbound: $(unbound -V 2>/dev/null | awk '/^Version/ { print $2 }')"
  echo "pdns: $(pdns_recursor --version 2>&1 | grep -o 'PowerDNS Recursor [0-9.]*' | head -n1)"
  echo "kresd: $(kresd --version 2>/dev/null | head -n1)"
  echo "nsd: $(nsd -v 2>&1 | head -n1)"
  echo "dnsperf: $(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(nproc) x $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
}
versions >"$WORK/out/versions.txt"
# This run's report: work/out/report.md, with one file per workload in work/out/groups/. A full run
# (neither --quick nor --profile) also replaces results/<W>.tsv and <W>.md for every workload it
# measured and regenerates results/latest.md from all of them; other workloads' files stay.
publish=()
((PROFILE || QUICK)) || publish=(--publish "$RESULTS")
python3 "$HERE/lib/report.py" run --tsv "$TSV" --w4 "$WORK/out/w4.tsv" --notes "$WORK/out/notes.tsv" \
  --versions "$WORK/out/versions.txt" --started "$STARTED" --load "$LOAD_BEFORE -> $LOAD_AFTER" \
  --runs "$RUNS" --duration "$DURATION" --quick "$QUICK" --w2-names "$(wc -l <"$W2_FILE")" --w5-setup "$W5_SETUP" \
  --servers "$(IFS=,; echo "${SERVER_LIST[*]}")" --groupdir "$WORK/out/groups" --out "$WORK/out/report.md" \
  ${publish[@]+"${publish[@]}"}
((PROFILE || QUICK)) && log "quick or profiled run: report in $WORK/out/report.md, bench/results/ left alone"
cat "$WORK/out/report.md"

#!/usr/bin/env python3
"""Turns bench/run.sh measurements into markdown: one file per workload and a summary.

    report.py run --tsv T --w4 T --notes T --versions F --started S --load L --runs N --duration S
                  --quick 0|1 --w2-names N [--w5-setup TEXT] --servers LIST --groupdir DIR --out REPORT
                  [--publish RESULTS]
    report.py rebuild --dir RESULTS

`run` splits one run's raw rows by workload (W0, W1, W2, W7-tcp, W7-dot, W7-doh, W7-doh-post, W3, W4, W5, W8)
into DIR/<W>.tsv
(the raw rows plus `#` lines with the run's date, rounds, versions and load), renders DIR/<W>.md and
REPORT (summary + every workload of this run). With --publish, the workloads this run measured
replace RESULTS/<W>.tsv, and RESULTS is rebuilt: every RESULTS/<W>.md from its <W>.tsv, and
RESULTS/latest.md = summary over the newest file of each workload + those files concatenated.

Medians over rounds; every ratio is juris ÷ peer computed *within one round* (same run, same
conditions) and then the median of those per-round ratios is shown. Ratios never cross runs.
W5 is a latency workload: its ratios and targets are on mean latency and p99, not CPU."""
import argparse
import collections
import glob
import os
import statistics
import sys

COLS = ["wl", "round", "server", "qps", "sent", "completed", "lost", "avg_us", "p99_us", "cpu_s", "cpu_us", "rcodes", "stat_s", "cpu_src"]
NAMES = {"echo": "echo floor (C)", "juris": "juris", "unbound": "Unbound", "pdns": "PowerDNS Rec", "kresd": "Knot Res",
         "juris-noval": "juris, validation off"}
SERVER_ORDER = ["echo", "juris", "juris-noval", "unbound", "pdns", "kresd"]
NOT_PEERS = ("echo", "juris", "juris-noval")   # never "the best peer"
TITLES = {
    "W0": "W0: UDP echo, recvmmsg/sendmmsg (kernel floor)",
    "W1": "W1: cache hits, UDP, 1000 hot names",
    "W2": "W2: every name from a cold cache, UDP, ~5% NXDOMAIN (one pass)",
    "W7-tcp": "W7-tcp: cache hits over TCP (W1 names, 8 connections)",
    "W7-dot": "W7-dot: cache hits over DNS over TLS (W1 names, 8 TLS sessions)",
    "W7-doh": "W7-doh: cache hits over DNS over HTTPS, GET (W1 names, 8 HTTP/2 connections)",
    "W7-doh-post": "W7-doh-post: cache hits over DNS over HTTPS, POST (W1 names, 8 HTTP/2 connections)",
    "W3-W1": "W3 on W1: cache hits from 4 client addresses (IT, DE, FR, unknown)",
    "W3-W2": "W3 on W2: cold cache from 4 client addresses",
    "W4-swap": "W4: 20k qps while an order file is rewritten (policy swap)",
    "W4-noswap": "W4: the same load without a swap",
    "W5": "W5: cold cache, authoritative servers delayed by tc netem (latency)",
    "W1-DNSSEC": "W1-DNSSEC: cache hits on the signed hierarchy, DO=1, validation on (juris also off)",
    "W2-DNSSEC": "W2-DNSSEC: every name of the signed hierarchy from a cold cache, validation on, one pass",
    "W8-capacity": "W8: juris's cold capacity on the flood's names (plain configuration, dnsperf, one pass)",
    "W8-alone": "W8: W1 from the legitimate client alone (flood protections on)",
    "W8-flood": "W8: W1 from the legitimate client under the random-subdomain flood",
}
GROUP_TITLES = {
    "W0": TITLES["W0"], "W1": TITLES["W1"], "W2": TITLES["W2"], "W7-tcp": TITLES["W7-tcp"], "W7-dot": TITLES["W7-dot"],
    "W7-doh": TITLES["W7-doh"], "W7-doh-post": TITLES["W7-doh-post"],
    "W3": "W3: policy cost (blocked names over 3 jurisdictions, clients from 4 addresses)",
    "W4": "W4: policy memory, compile and update",
    "W5": TITLES["W5"],
    "W1-DNSSEC": TITLES["W1-DNSSEC"], "W2-DNSSEC": TITLES["W2-DNSSEC"],
    "W8": "W8: random-subdomain flood at 1.5× juris's cold capacity from one client, W1 from another",
}
GROUP_ORDER = ["W0", "W1", "W2", "W7-tcp", "W7-dot", "W7-doh", "W7-doh-post", "W1-DNSSEC", "W2-DNSSEC", "W3", "W4", "W5", "W8"]
WL_ORDER = ["W0", "W1", "W2", "W7-tcp", "W7-dot", "W7-doh", "W7-doh-post", "W1-DNSSEC", "W2-DNSSEC", "W3-W1", "W3-W2",
            "W4-swap", "W4-noswap", "W5", "W8-alone", "W8-flood", "W8-capacity"]
SUMMARY = ["W0", "W1", "W2", "W7-tcp", "W7-dot", "W7-doh", "W7-doh-post", "W1-DNSSEC", "W2-DNSSEC"]
TARGETS = {"W1": ("unbound", 0.75), "W2": ("best", 0.67), "W7-tcp": ("best", 0.80), "W7-dot": ("best", 0.80),
           "W7-doh": ("best", 0.80), "W7-doh-post": ("best", 0.80), "W2-DNSSEC": ("best", 0.67),
           "W1-DNSSEC": ("juris-noval", 1.03)}
# Latency workloads: (column, label, peer, limit) -- juris ÷ peer of that column, same round, median.
LAT_TARGETS = {"W5": [("avg_us", "mean latency", "unbound", 1.0), ("p99_us", "p99", "unbound", 0.8)]}
LEGACY = {"W7": "W7-tcp"}          # rows written before W7 was split into W7-tcp and W7-dot
METHOD = ("Server pinned to CPU 1, dnsperf (and NSD) to CPU 0. CPU-µs/answer = server utime+stime "
          "(/proc/PID/stat) over the measurement ÷ answered queries. Medians over rounds; "
          "ratios are juris ÷ peer within the same round of the same run, then the median.")


def group_of(wl):
    wl = LEGACY.get(wl, wl)
    if wl.startswith("W3"):
        return "W3"
    if wl.startswith("W4"):
        return "W4"
    if wl.startswith("W8"):
        return "W8"
    return wl


def order_key(order, x):
    return (order.index(x) if x in order else len(order), x)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, float) and nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


def parse_row(line):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != len(COLS):
        return None
    r = dict(zip(COLS, parts))
    r["wl"] = LEGACY.get(r["wl"], r["wl"])
    for k in ("qps", "avg_us", "cpu_s", "cpu_us"):
        r[k] = float(r[k])
    for k in ("sent", "completed", "lost", "p99_us"):
        r[k] = int(r[k])
    if r["cpu_us"] < 0:
        r["cpu_us"] = None
    if r["p99_us"] < 0:
        r["p99_us"] = None
    return r


def read_lines(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except (OSError, TypeError):
        return []


# ---- one workload's data: raw rows + the run's metadata -----------------------------------------
class Group:
    def __init__(self, name):
        self.name = name
        self.meta = {}
        self.versions = []
        self.raw = []        # measurement lines, exactly as run.sh wrote them
        self.w4 = []         # policy metrics: [workload, round, server, metric, variant, value]
        self.notes = []      # [workload, round ("na": not applicable to that server), server, text]

    @property
    def rows(self):
        return [r for r in (parse_row(l) for l in self.raw) if r]

    def measured(self):
        return bool(self.rows or self.w4)

    def write(self, path):
        out = [f"#group\t{self.name}"]
        for k in ("started", "runs", "duration", "quick", "load", "servers", "w2_names", "w5_setup"):
            if k in self.meta:
                out.append(f"#{k}\t{self.meta[k]}")
        out += [f"#version\t{v}" for v in self.versions]
        out += ["#w4\t" + "\t".join(p) for p in self.w4]
        out += ["#note\t" + "\t".join(n) for n in self.notes]
        out += self.raw
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")

    @classmethod
    def read(cls, path):
        g = cls(os.path.basename(path)[:-len(".tsv")])
        for line in read_lines(path):
            if not line.startswith("#"):
                g.raw.append(line)
                continue
            key, _, val = line[1:].partition("\t")
            if key == "group":
                g.name = val
            elif key == "version":
                g.versions.append(val)
            elif key == "w4":
                g.w4.append(val.split("\t"))
            elif key == "note":
                g.notes.append(val.split("\t"))
            else:
                g.meta[key] = val
        return g

    def na(self):
        """{(workload, server): text} for servers the workload does not apply to (e.g. no DoT)."""
        return {(n[0], n[2]): n[3] for n in self.notes if len(n) >= 4 and n[1] == "na"}

    def when(self):
        s = self.meta.get("started", "?")
        short = s[:10] + " " + s[11:16] + "Z" if len(s) >= 16 else s
        if self.meta.get("w5_setup"):
            return f"{short}, {self.meta.get('runs', '?')} round(s), one pass" + \
                (" QUICK" if self.meta.get("quick") == "1" else "")
        return f"{short}, {self.meta.get('runs', '?')}×{self.meta.get('duration', '?')} s" + \
            (" QUICK" if self.meta.get("quick") == "1" else "")


def split_run(a):
    """The rows of one run, by workload group."""
    groups = {}

    def g(name):
        if name not in groups:
            gr = groups[name] = Group(name)
            gr.meta = {"started": a.started, "runs": a.runs, "duration": a.duration, "quick": a.quick,
                       "load": a.load, "servers": a.servers}
            if name in ("W2", "W3", "W2-DNSSEC"):
                gr.meta["w2_names"] = a.w2_names
            if name == "W5" and a.w5_setup:
                gr.meta["w5_setup"] = a.w5_setup
            gr.versions = read_lines(a.versions)
        return groups[name]

    for line in read_lines(a.tsv):
        r = parse_row(line)
        if r:
            g(group_of(r["wl"])).raw.append(line)
    for line in read_lines(a.w4):
        parts = line.split("\t")
        if len(parts) >= 6:
            g(group_of(parts[0])).w4.append(parts)
    for line in read_lines(a.notes):
        parts = line.split("\t")
        if len(parts) >= 4:
            g(group_of(parts[0])).notes.append(parts)
    return groups


def load_dir(d):
    groups = {}
    for path in sorted(glob.glob(os.path.join(d, "*.tsv"))):
        if os.path.basename(path) == "latest.tsv":
            continue
        gr = Group.read(path)
        if gr.raw or gr.w4 or gr.notes:
            groups[gr.name] = gr
    return groups


# ---- rendering ----------------------------------------------------------------------------------
def ratio(per_round, w, num, den, key="cpu_us"):
    rs = []
    for (wl, s, rnd), r in per_round.items():
        if wl == w and s == num:
            d = per_round.get((w, den, rnd))
            if d and d[key] and r[key] and d[key] > 0 and r[key] > 0:
                rs.append(r[key] / d[key])
    return med(rs)


def lat_target_text(per_round, w):
    """W5: '<label> ≤ L× Peer: x× → met' for each latency target."""
    parts = []
    for key, label, who, limit in LAT_TARGETS.get(w, []):
        r = ratio(per_round, w, "juris", who, key)
        parts.append(f"{label} ≤ {limit:.1f}× {NAMES[who]}" + ("" if r is None else f": {r:.3f}× → {'met' if r <= limit else 'MISSED'}"))
    return "; ".join(parts)


def target_text(per_round, by, w, peers):
    if w not in TARGETS:
        return "reference" if w == "W0" else ""
    who, limit = TARGETS[w]
    if who == "best":
        meds = {s: med([r["cpu_us"] for r in by.get((w, s), [])]) for s in peers if s not in NOT_PEERS}
        meds = {s: m for s, m in meds.items() if m}
        if not meds:
            return f"≤ {limit}× best peer"
        who = min(meds, key=meds.get)
    r = ratio(per_round, w, "juris", who)
    if r is None:
        return f"≤ {limit}× {NAMES[who]}"
    return f"≤ {limit}× {NAMES[who]}: {r:.3f}× → {'met' if r <= limit else 'MISSED'}"


def index(rows):
    by = collections.defaultdict(list)
    for r in rows:
        by[(r["wl"], r["server"])].append(r)
    per_round = {(r["wl"], r["server"], r["round"]): r for r in rows}
    return by, per_round


def render_group(g):
    rows = g.rows
    by, per_round = index(rows)
    na = g.na()
    m = g.meta
    out = [f"## {GROUP_TITLES.get(g.name, g.name)}\n"]
    servers = sorted({r["server"] for r in rows} | {k[1] for k in na}, key=lambda s: order_key(SERVER_ORDER, s))
    line = (f"Measured {m.get('started', '?')}; {m.get('runs', '?')} round(s) of {m.get('duration', '?')} s per measurement"
            f"{' (QUICK smoke run: not for publication)' if m.get('quick') == '1' else ''}; "
            f"servers: {', '.join(NAMES.get(s, s) for s in servers) or '–'}")
    if g.name == "W3":
        line = line.replace("servers: ", "juris only, variants: ")
    if m.get("w2_names"):
        line += f"; W2 = {m['w2_names']} queries, one pass"
    if m.get("w5_setup"):
        line = line.replace(f"of {m.get('duration', '?')} s per measurement", "(one pass each)")
        line += f"; W5 = {m['w5_setup']}"
    out.append(line + f"; load average (1/5/15 min) before → after: {m.get('load', '?')}.\n")
    if g.versions:
        out.append("Versions: " + "; ".join(g.versions) + "\n")

    if g.name == "W8":
        out += render_w8(g, by, per_round)
    wls = sorted({r["wl"] for r in rows} | {k[0] for k in na}, key=lambda w: order_key(WL_ORDER, w))
    for w in wls:
        if len(wls) > 1 or w != g.name:
            out.append(f"### {TITLES.get(w, w)}\n")
        if w in LAT_TARGETS:
            out += render_latency_table(w, by, per_round, na)
            continue
        out.append("| server | qps | answered | lost | avg latency µs | p99 µs | CPU-µs/answer | juris ÷ server (same round) | rcodes (last round) |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        ss = sorted({k[1] for k in by if k[0] == w} | {k[1] for k in na if k[0] == w},
                    key=lambda s: (s not in ("juris", "nopolicy"), order_key(SERVER_ORDER, s)))
        base = "juris" if w not in ("W3-W1", "W3-W2") else "nopolicy"
        for s in ss:
            if (w, s) in na and (w, s) not in by:
                out.append(f"| {NAMES.get(s, s)} | {na[(w, s)]} | – | – | – | – | – | – | – |")
                continue
            rs = by[(w, s)]
            if w.startswith("W3"):
                rat = ratio(per_round, w, s, base)
                rtxt = "baseline" if s == base else (f"{fmt(rat)}× of no-policy ({(rat - 1) * 100:+.1f}%)" if rat else "–")
            else:
                rat = ratio(per_round, w, "juris", s) if s != "juris" else None
                rtxt = (fmt(rat) + "×") if rat else "–"
            out.append(f"| {NAMES.get(s, s)} | {fmt(med([r['qps'] for r in rs]), 0)} | {fmt(med([r['completed'] for r in rs]), 0)} | "
                       f"{fmt(med([r['lost'] for r in rs]), 0)} | {fmt(med([r['avg_us'] for r in rs]), 0)} | "
                       f"{fmt(med([r['p99_us'] for r in rs]), 0)} | {fmt(med([r['cpu_us'] for r in rs]))} | {rtxt} | "
                       f"{rs[-1]['rcodes']} |")
        measured = [s for s in ss if (w, s) in by]
        if measured:
            out.append(f"\n({len(by[(w, measured[0])])} round(s); per-round CPU-µs/answer: "
                       + "; ".join(f"{NAMES.get(s, s)} " + ", ".join(fmt(r['cpu_us']) for r in by[(w, s)]) for s in measured) + ")\n")
        else:
            out.append("")
        if w in TARGETS and measured:
            peers = [s for s in measured if s not in ("echo", "juris")]
            out.append(f"Target: {target_text(per_round, by, w, peers)}.\n")

    if g.w4:
        title = {"W3": "Policy start-up and memory, measured during the W3 runs",
                 "W1-DNSSEC": "Validation checks (dig +dnssec through each server)",
                 "W2-DNSSEC": "Validation checks (dig +dnssec through each server: before round 1 on a fresh start, after each pass from the cache)",
                 "W5": "Delay checks: dig query times in ms (towards NSD: delayed; cache hit: not) and netem counters",
                 "W8": "W8 details: capacity, flood rate, each flood's counts, peak RSS, survival"}.get(
            g.name, "Policy start-up, memory, one-name update (juris, measured from outside)")
        out.append(f"### {title}\n")
        out.append("| round | metric | variant | value |")
        out.append("|---|---|---|---|")
        for parts in g.w4:
            out.append(f"| {parts[1]} | {parts[3]} | {parts[4]} | {parts[5]} |")
        out.append(rss_per_name(g.w4))
        out.append("")
    other = [n for n in g.notes if len(n) >= 4 and n[1] != "na"]
    if other:
        out.append("Not measured:\n")
        for n in other:
            rnd = f" (round {n[1]})" if n[1] not in ("-", "") else ""
            who = f"{NAMES.get(n[2], n[2])}: " if n[2] not in ("-", "") else ""
            out.append(f"- {n[0]}{rnd}: {who}{n[-1]}")
        out.append("")
    return out


W8_TARGET = 0.90   # juris keeps at least this share of its W1 throughput under the flood
W8_GEN_BOUND = 97  # CPU 0 busy at least this % during a W8 row: the load generators bound it (bench/run.sh)


def flood_counts(text):
    """flood.c's line 'sent=N answered=N noerror=N ...' -> dict of ints."""
    out = {}
    for part in text.split():
        k, _, v = part.partition("=")
        if v.isdigit():
            out[k] = int(v)
    return out


def render_w8(g, by, per_round):
    """Per server: W1 qps alone and under the flood (same start), their same-round ratio, the flood's
    answer mix, peak RSS, survival."""
    metrics = collections.defaultdict(list)
    for p in g.w4:
        if len(p) >= 6:
            metrics[(p[2], p[3])].append(p)
    rate = [p[5] for p in g.w4 if len(p) >= 6 and p[3] == "flood_rate"]
    quota = [p[5] for p in g.w4 if len(p) >= 6 and p[3] == "cpu_quota"]
    out = []
    if rate:
        out.append(f"Flood: {rate[-1]} queries/s of `nx-<random>.<victim zone>` (open loop), each name once.\n")
    if quota and quota[-1] != "100":
        out.append(f"Every server ran under a CPU quota of {quota[-1]} % of one CPU (design 0050), so that its own CPU, "
                   "not the load generators' on CPU 0, bounds W1.\n")
    out.append("| server | W1 qps alone | W1 qps under flood | under flood ÷ alone (same round) | W1 lost under flood | "
               "flood sent | flood answered NOERROR / NXDOMAIN / SERVFAIL / REFUSED (TC) | flood not answered | "
               "peak RSS MiB | survived | CPU 0 busy, alone / flood (load generators) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    generator_bound = {}
    servers = sorted({r["server"] for r in g.rows if r["wl"] in ("W8-alone", "W8-flood")}, key=lambda s: order_key(SERVER_ORDER, s))
    ratios = {}
    for s in servers:
        rs = []
        for (wl, srv, rnd), row in per_round.items():
            if wl == "W8-flood" and srv == s:
                a = per_round.get(("W8-alone", s, rnd))
                if a and a["qps"] > 0:
                    rs.append(row["qps"] / a["qps"])
        ratios[s] = med(rs)
        floods = [flood_counts(p[5]) for p in metrics.get((s, "flood"), [])]
        last = floods[-1] if floods else {}

        def share(k):
            return f"{last.get(k, 0) / last['sent'] * 100:.1f}%" if last.get("sent") else "–"
        mix = (f"{share('noerror')} / {share('nxdomain')} / {share('servfail')} / {share('refused')} ({share('tc')})"
               if last else "–")
        lost = (f"{(last['sent'] - last.get('answered', 0)) / last['sent'] * 100:.1f}%" if last.get("sent") else "–")
        hwm = [int(p[5]) for p in metrics.get((s, "rss_peak_kib"), []) if p[5].lstrip("-").isdigit() and int(p[5]) > 0]
        alive = [p[5] for p in metrics.get((s, "alive"), [])]
        survived = "yes" if alive and all(a == "yes" for a in alive) else ("; ".join(a for a in alive if a != "yes") or "–")
        busy = {ph: [float(p[5]) for p in metrics.get((s, "cpu0_busy"), []) if p[4] == ph] for ph in ("alone", "flood")}
        generator_bound[s] = any(b >= W8_GEN_BOUND for bs in busy.values() for b in bs)
        busy_text = " / ".join(f"{max(busy[ph]):.0f} %" if busy[ph] else "–" for ph in ("alone", "flood"))
        out.append(f"| {NAMES.get(s, s)} | {fmt(med([r['qps'] for r in by.get(('W8-alone', s), [])]), 0)} | "
                   f"{fmt(med([r['qps'] for r in by.get(('W8-flood', s), [])]), 0)} | "
                   f"{fmt(ratios[s] * 100, 1) + '%' if ratios[s] is not None else '–'} | "
                   f"{fmt(med([r['lost'] for r in by.get(('W8-flood', s), [])]), 0)} | {fmt(last.get('sent'), 0) if last else '–'} | "
                   f"{mix} | {lost} | {fmt(max(hwm) / 1024, 0) if hwm else '–'} | {survived} | {busy_text} |")
    out.append("\n(flood columns: the last round; peak RSS: the largest VmHWM over the rounds; CPU 0 busy: the highest "
               "over the rounds)\n")
    if ratios.get("juris") is not None:
        x = ratios["juris"]
        if generator_bound.get("juris"):
            out.append(f"Target: juris keeps ≥ {W8_TARGET:.0%} of its W1 throughput under the flood: {x:.1%}, **not a "
                       f"verdict**: CPU 0 (dnsperf, flood.c) was ≥ {W8_GEN_BOUND} % busy, so the load generators, not "
                       "juris, set W1's rate (give the server a CPU quota: --w8-cpu).\n")
        else:
            out.append(f"Target: juris keeps ≥ {W8_TARGET:.0%} of its W1 throughput under the flood: {x:.1%} → "
                       f"{'met' if x >= W8_TARGET else 'MISSED'}.\n")
    return out


def render_latency_table(w, by, per_round, na):
    """Mean latency and p99 first, with juris ÷ server for both (same round), then qps, lost and CPU."""
    out = ["| server | mean latency µs | p99 µs | juris ÷ server, mean | juris ÷ server, p99 | qps | answered | lost | "
           "CPU-µs/answer | juris ÷ server, CPU | rcodes (last round) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    ss = sorted({k[1] for k in by if k[0] == w} | {k[1] for k in na if k[0] == w},
                key=lambda s: (s != "juris", order_key(SERVER_ORDER, s)))
    for s in ss:
        if (w, s) in na and (w, s) not in by:
            out.append(f"| {NAMES.get(s, s)} | {na[(w, s)]} |" + " – |" * 10)
            continue
        rs = by[(w, s)]

        def rat(key):
            x = ratio(per_round, w, "juris", s, key) if s != "juris" else None
            return (fmt(x) + "×") if x else "–"
        out.append(f"| {NAMES.get(s, s)} | {fmt(med([r['avg_us'] for r in rs]), 0)} | {fmt(med([r['p99_us'] for r in rs]), 0)} | "
                   f"{rat('avg_us')} | {rat('p99_us')} | {fmt(med([r['qps'] for r in rs]), 0)} | "
                   f"{fmt(med([r['completed'] for r in rs]), 0)} | {fmt(med([r['lost'] for r in rs]), 0)} | "
                   f"{fmt(med([r['cpu_us'] for r in rs]))} | {rat('cpu_us')} | {rs[-1]['rcodes']} |")
    measured = [s for s in ss if (w, s) in by]
    if measured:
        out.append(f"\n({len(by[(w, measured[0])])} round(s); per-round mean / p99 latency µs: "
                   + "; ".join(f"{NAMES.get(s, s)} " + ", ".join(f"{r['avg_us']:.0f} / {r['p99_us'] if r['p99_us'] is not None else '–'}"
                                                                  for r in by[(w, s)]) for s in measured) + ")\n")
        if "juris" in measured:
            out.append(f"Target: {lat_target_text(per_round, w)}.\n")
    else:
        out.append("")
    return out


def render_lat_summary(groups):
    """Latency workloads (W5): median mean latency and p99 per server, same-round ratios, targets."""
    main = [groups[w] for w in LAT_TARGETS if w in groups and groups[w].rows]
    out = []
    for g in main:
        w = g.name
        by, per_round = index(g.rows)
        servers = sorted({r["server"] for r in g.rows}, key=lambda s: order_key(SERVER_ORDER, s))
        peers = [s for s in servers if s != "juris"]
        out.append(f"## Summary: {w} client-observed latency (median over rounds)\n")
        head = "| metric | measured | " + " | ".join(NAMES.get(s, s) for s in servers) + " | " + \
            " | ".join(f"juris ÷ {NAMES.get(s, s)}" for s in peers) + " | target |"
        out.append(head)
        out.append("|" + "---|" * (head.count("|") - 1))
        for key, label, who, limit in LAT_TARGETS[w]:
            cells = [fmt(med([r[key] for r in by.get((w, s), [])]), 0) for s in servers]
            rats = []
            for s in peers:
                x = ratio(per_round, w, "juris", s, key)
                rats.append(fmt(x) + ("×" if x else ""))
            x = ratio(per_round, w, "juris", who, key)
            tgt = f"≤ {limit:.1f}× {NAMES[who]}" + ("" if x is None else f": {x:.3f}× → {'met' if x <= limit else 'MISSED'}")
            out.append(f"| {w} {label} µs | {g.when()} | " + " | ".join(cells) + " | " + " | ".join(rats) + f" | {tgt} |")
        out.append("")
    return out


def render_summary(groups):
    main = [groups[w] for w in SUMMARY if w in groups and groups[w].rows]
    if not main:
        return []
    servers = set()
    for g in main:
        servers |= {r["server"] for r in g.rows} | {k[1] for k in g.na()}
    servers = sorted(servers, key=lambda s: order_key(SERVER_ORDER, s))
    peers = [s for s in servers if s not in ("echo", "juris")]
    out = ["## Summary: server CPU-µs per answered query (median)\n"]
    head = "| workload | measured | " + " | ".join(NAMES.get(s, s) for s in servers) + " | " + \
        " | ".join(f"juris ÷ {NAMES.get(s, s)}" for s in peers) + " | target |"
    out.append(head)
    out.append("|" + "---|" * (head.count("|") - 1))
    for g in main:
        w = g.name
        by, per_round = index(g.rows)
        na = g.na()
        cells = [na.get((w, s)) or fmt(med([r["cpu_us"] for r in by.get((w, s), [])])) for s in servers]
        rats = []
        for s in peers:
            if (w, s) in na:
                rats.append("n/a")
            else:
                x = ratio(per_round, w, "juris", s)
                rats.append(fmt(x) + ("×" if x else ""))
        present = [s for s in peers if (w, s) in by]
        out.append(f"| {w} | {g.when()} | " + " | ".join(cells) + " | " + " | ".join(rats)
                   + f" | {target_text(per_round, by, w, present)} |")
    if "W0" in groups and "W1" in groups:
        floor = med([r["cpu_us"] for r in groups["W0"].rows if r["server"] == "echo"])
        j = med([r["cpu_us"] for r in groups["W1"].rows if r["server"] == "juris"])
        if floor and j:
            s0, s1 = groups["W0"].meta.get("started"), groups["W1"].meta.get("started")
            note = "" if s0 == s1 else f"; W0 and W1 from different runs ({s0}, {s1}), compare with care"
            out.append(f"\nW1 juris ÷ W0 floor: {j / floor:.2f}× (target ≤ 1.25×: "
                       f"{'met' if j / floor <= 1.25 else 'MISSED'}{note}).")
    out.append("")
    return out


def render_report(groups, intro):
    out = ["# juris benchmark results\n", intro + "\n", METHOD + "\n"]
    out += render_summary(groups)
    out += render_lat_summary(groups)
    unmeasured = []
    for name in sorted(groups, key=lambda n: order_key(GROUP_ORDER, n)):
        if groups[name].measured():
            out += render_group(groups[name])
        else:
            unmeasured += groups[name].notes
    if unmeasured:
        out.append("## Not measured\n")
        out += [f"- {n[0]}: {n[-1]}" for n in unmeasured if len(n) >= 4]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def render_dir(d, out, intro):
    groups = load_dir(d)
    for name, g in groups.items():
        if g.measured():
            write(os.path.join(d, f"{name}.md"), "\n".join(render_group(g)).rstrip("\n") + "\n")
    write(out, render_report(groups, intro))
    return groups


LATEST_INTRO = ("Each workload below is its newest full run, kept in `bench/results/<W>.md` (raw rows and run "
                "details in `<W>.tsv`); `bench/run.sh` replaces only the workloads it measured and regenerates this "
                "file (`bench/lib/report.py rebuild --dir bench/results` does it by hand). Workloads can come from "
                "different runs: each section states its own date, rounds, servers, versions and load, and the "
                "summary's *measured* column says which run a row comes from.")


def rss_per_name(w4):
    by = collections.defaultdict(list)
    for parts in w4:
        if len(parts) >= 6 and parts[3] == "rss_kib":
            by[parts[4]].append(int(parts[5]))
    base = med(by.get("nopolicy", []))
    lines = []
    for k, v in by.items():
        if k.startswith("policy-") and base:
            names = int(k.split("-", 1)[1])
            lines.append(f"RSS above no-policy with {names:,} names: {(med(v) - base) * 1024 / names:.1f} bytes per blocked name "
                         f"(after the W1 run; includes the cache of W1's names in both).")
    return "\n" + "\n".join(lines) if lines else ""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="split one run by workload, render it, optionally publish it")
    for k in ("tsv", "w4", "notes", "versions", "started", "load", "runs", "duration", "quick", "w2-names",
              "w5-setup", "servers", "groupdir", "out"):
        run.add_argument("--" + k, required=k in ("tsv", "groupdir", "out"), default="")
    run.add_argument("--publish", help="results directory: replace the measured workloads there and rebuild latest.md")
    reb = sub.add_parser("rebuild", help="re-render every <W>.md and latest.md in a results directory")
    reb.add_argument("--dir", required=True)
    a = p.parse_args()

    if a.cmd == "rebuild":
        render_dir(a.dir, os.path.join(a.dir, "latest.md"), LATEST_INTRO)
        return
    os.makedirs(a.groupdir, exist_ok=True)
    for old in glob.glob(os.path.join(a.groupdir, "*.tsv")) + glob.glob(os.path.join(a.groupdir, "*.md")):
        os.remove(old)
    groups = split_run(a)
    for name, g in groups.items():
        g.write(os.path.join(a.groupdir, f"{name}.tsv"))
    intro = f"This run: started {a.started}, workloads {', '.join(sorted(groups, key=lambda n: order_key(GROUP_ORDER, n))) or 'none'}."
    if a.quick == "1":
        intro += " QUICK smoke run: not for publication."
    render_dir(a.groupdir, a.out, intro)
    if a.publish:
        os.makedirs(a.publish, exist_ok=True)
        done = []
        for name, g in groups.items():
            if g.measured():
                g.write(os.path.join(a.publish, f"{name}.tsv"))
                done.append(name)
        render_dir(a.publish, os.path.join(a.publish, "latest.md"), LATEST_INTRO)
        print(f"report.py: replaced {', '.join(sorted(done, key=lambda n: order_key(GROUP_ORDER, n))) or 'nothing'} "
              f"in {a.publish}; latest.md regenerated", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Turns bench/run.sh measurements (TSV) into the markdown report (bench/results/latest.md).

Medians over rounds; every ratio is juris ÷ peer computed *within one round* (same run, same
conditions) and then the median of those per-round ratios is shown."""
import argparse
import collections
import statistics

COLS = ["wl", "round", "server", "qps", "sent", "completed", "lost", "avg_us", "p99_us", "cpu_s", "cpu_us", "rcodes", "stat_s", "cpu_src"]
NAMES = {"echo": "echo floor (C)", "juris": "juris", "unbound": "Unbound", "pdns": "PowerDNS Rec", "kresd": "Knot Res"}
TITLES = {
    "W0": "W0: UDP echo, recvmmsg/sendmmsg (kernel floor)",
    "W1": "W1: cache hits, UDP, 1000 hot names",
    "W2": "W2: every name from a cold cache, UDP, ~5% NXDOMAIN (one pass)",
    "W7": "W7: cache hits over TCP (W1 names)",
    "W3-W1": "W3 on W1: cache hits from 4 client addresses (IT, DE, FR, unknown)",
    "W3-W2": "W3 on W2: cold cache from 4 client addresses",
    "W4-swap": "W4: 20k qps while an order file is rewritten (policy swap)",
    "W4-noswap": "W4: the same load without a swap",
}
TARGETS = {"W1": ("unbound", 0.75), "W2": ("best", 0.67), "W7": ("best", 0.80)}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, float) and nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(COLS):
                continue
            r = dict(zip(COLS, parts))
            for k in ("qps", "avg_us", "cpu_s", "cpu_us"):
                r[k] = float(r[k])
            for k in ("sent", "completed", "lost", "p99_us"):
                r[k] = int(r[k])
            if r["cpu_us"] < 0:
                r["cpu_us"] = None
            if r["p99_us"] < 0:
                r["p99_us"] = None
            rows.append(r)
    return rows


def main():
    p = argparse.ArgumentParser()
    for a in ("tsv", "w4", "notes", "versions", "started", "load", "runs", "duration", "quick", "w2-names", "out"):
        p.add_argument("--" + a)
    a = p.parse_args()
    rows = load(a.tsv)
    by = collections.defaultdict(list)
    for r in rows:
        by[(r["wl"], r["server"])].append(r)
    per_round = {(r["wl"], r["server"], r["round"]): r for r in rows}

    out = []
    out.append(f"# juris benchmark results\n")
    out.append(f"Started {a.started}; {a.runs} round(s) of {a.duration} s per measurement"
               f"{' (QUICK smoke run: not for publication)' if a.quick == '1' else ''}; W2 = {a.w2_names} queries, one pass; "
               f"load average (1/5/15 min) before → after: {a.load}.\n")
    out.append("Server pinned to CPU 1, dnsperf (and NSD) to CPU 0. CPU-µs/answer = server utime+stime "
               "(/proc/PID/stat) over the measurement ÷ answered queries. Medians over rounds; "
               "ratios are juris ÷ peer within the same round, then the median.\n")
    with open(a.versions) as f:
        out.append("Versions: " + "; ".join(l.strip() for l in f if l.strip()) + "\n")

    workloads = [w for w in ["W0", "W1", "W2", "W7", "W3-W1", "W3-W2", "W4-swap", "W4-noswap"]
                 if any(k[0] == w for k in by)]

    # Summary: CPU-µs per answer.
    servers = [s for s in ["echo", "juris", "unbound", "pdns", "kresd"] if any(k[1] == s for k in by)]
    main_wl = [w for w in ("W0", "W1", "W2", "W7") if w in workloads]
    if main_wl:
        out.append("## Summary: server CPU-µs per answered query (median)\n")
        peers = [s for s in servers if s not in ("echo", "juris")]
        head = "| workload | " + " | ".join(NAMES[s] for s in servers) + " | " + \
            " | ".join(f"juris ÷ {NAMES[s]}" for s in peers) + " | target |"
        out.append(head)
        out.append("|" + "---|" * (head.count("|") - 1))
        for w in main_wl:
            cells = [fmt(med([r["cpu_us"] for r in by.get((w, s), [])])) for s in servers]
            ratios = [ratio(per_round, w, "juris", s) for s in peers]
            out.append(f"| {w} | " + " | ".join(cells) + " | " + " | ".join(fmt(x) + ("×" if x else "") for x in ratios)
                       + f" | {target_text(per_round, by, w, peers)} |")
        if "W0" in workloads and "W1" in workloads:
            floor = med([r["cpu_us"] for r in by.get(("W0", "echo"), [])])
            j = med([r["cpu_us"] for r in by.get(("W1", "juris"), [])])
            if floor and j:
                out.append(f"\nW1 juris ÷ W0 floor: {j / floor:.2f}× (target ≤ 1.25×: "
                           f"{'met' if j / floor <= 1.25 else 'MISSED'}).")
        out.append("")

    for w in workloads:
        out.append(f"## {TITLES.get(w, w)}\n")
        out.append("| server | qps | answered | lost | avg latency µs | p99 µs | CPU-µs/answer | juris ÷ server (same round) | rcodes (last round) |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        ss = sorted({k[1] for k in by if k[0] == w}, key=lambda s: (s not in ("juris", "nopolicy"), s))
        base = "juris" if w not in ("W3-W1", "W3-W2") else "nopolicy"
        for s in ss:
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
        out.append(f"\n({len(by[(w, ss[0])])} round(s); per-round CPU-µs/answer: "
                   + "; ".join(f"{NAMES.get(s, s)} " + ", ".join(fmt(r['cpu_us']) for r in by[(w, s)]) for s in ss) + ")\n")

    w4 = []
    try:
        with open(a.w4) as f:
            w4 = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    except OSError:
        pass
    if w4:
        out.append("## W4: policy start-up, memory, one-name update (juris, measured from outside)\n")
        out.append("| round | metric | variant | value |")
        out.append("|---|---|---|---|")
        for parts in w4:
            if len(parts) >= 6:
                out.append(f"| {parts[1]} | {parts[3]} | {parts[4]} | {parts[5]} |")
        out.append(rss_per_name(w4))
        out.append("")
    try:
        with open(a.notes) as f:
            notes = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    except OSError:
        notes = []
    if notes:
        out.append("## Not measured\n")
        for n in notes:
            out.append(f"- {n[0]}: {n[-1]}")
        out.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


def ratio(per_round, w, num, den):
    rs = []
    for (wl, s, rnd), r in per_round.items():
        if wl == w and s == num:
            d = per_round.get((w, den, rnd))
            if d and d["cpu_us"] and r["cpu_us"]:
                rs.append(r["cpu_us"] / d["cpu_us"])
    return med(rs)


def target_text(per_round, by, w, peers):
    if w not in TARGETS:
        return "reference" if w == "W0" else ""
    who, limit = TARGETS[w]
    if who == "best":
        meds = {s: med([r["cpu_us"] for r in by.get((w, s), [])]) for s in peers}
        meds = {s: m for s, m in meds.items() if m}
        if not meds:
            return f"≤ {limit}× best peer"
        who = min(meds, key=meds.get)
    r = ratio(per_round, w, "juris", who)
    if r is None:
        return f"≤ {limit}× {NAMES[who]}"
    return f"≤ {limit}× {NAMES[who]}: {r:.3f}× → {'met' if r <= limit else 'MISSED'}"


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


if __name__ == "__main__":
    main()

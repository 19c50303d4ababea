#!/usr/bin/env python3
"""Fleet SLO benchmark (issue #12 item 5): one juris primary, three juris followers, loopback.

  bench/fleet.py [--names 1000000] [--changes 100] [--juris target/release/juris]

1. A policy of --names blocked names for Italy (order files on the primary, one order per 1M
   names), published as zones; three followers (`--follow`, one TSIG key each, NOTIFY).
2. --changes successive single-name changes through the admin API
   (`POST /v1/orders/BENCH-FLEET/targets`): for each, the time from the API's 200 to the follower
   answering NXDOMAIN for the new name to a query from an Italian address (127.0.0.101, the
   bench MMDB), polled on every follower in turn (UDP, 2 ms between rounds).
3. The IXFR of one changed name: `dig -y KEY IXFR=<serial before the last change>` on `orders.<suffix>` and
   `it.<suffix>`, its bytes ("XFR size").
4. The primary and follower 1 are stopped; follower 1 restarts from its snapshot: time from
   the process start to the first blocked answer (a name of the big policy).

  bench/fleet.py --restart-only --names 10000000

only measures step 4 (design 0043): one primary (order files, 1M names per order), one
follower; once the follower's snapshot holds its validated orders, both stop and the follower
restarts with the primary unreachable: time from exec to the first blocked answer.

Needs root? No. Needs: python3-dnspython, dig (bind9-dnsutils). Prints a markdown report and
writes it to bench/work/fleet/report.md. Every process is killed on exit.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import dns.flags
import dns.message
import dns.rcode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
import gen  # noqa: E402  (the bench's MMDB and order generators)

ITALY = "127.0.0.101"
PRIMARY_XFR = ("127.0.0.1", 15353)
PRIMARY_DNS = ("127.0.0.1", 15300)
PRIMARY_API = ("127.0.0.1", 18053)
FOLLOWERS = [(f"edge-{i}", ("127.0.0.1", 15400 + i)) for i in (1, 2, 3)]
SUFFIX = "rpz.juris.invalid."
PROCS = []


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def start(args, log):
    proc = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    PROCS.append(proc)
    return proc


def stop(proc):
    proc.stopped = True
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def blocked(addr, name, timeout=0.5):
    """Whether `addr` answers NXDOMAIN for `name` to an Italian client (None: no answer)."""
    q = dns.message.make_query(name, "A")
    q.flags &= ~dns.flags.RD  # the policy answers first; no recursion for unblocked names
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ITALY, 0))
    s.settimeout(timeout)
    try:
        s.sendto(q.to_wire(), addr)
        data, _ = s.recvfrom(65535)
        return dns.message.from_wire(data).rcode() == dns.rcode.NXDOMAIN
    except (socket.timeout, OSError):
        return None
    finally:
        s.close()


def api(method, path, token, body=None):
    req = urllib.request.Request(f"http://{PRIMARY_API[0]}:{PRIMARY_API[1]}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, json.loads(r.read() or b"null")


def until(what, check, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        dead = [p.args[-1] for p in PROCS if p.poll() is not None and not getattr(p, "stopped", False)]
        if dead:
            raise SystemExit(f"waiting for {what}: a juris process exited (see the logs in --work)")
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ixfr_bytes(key, zone, serial):
    out = run("dig", "-y", key, "-p", str(PRIMARY_XFR[1]), f"@{PRIMARY_XFR[0]}", zone, f"IXFR={serial}")
    m = re.search(r"XFR size: (\d+) records \(messages (\d+), bytes (\d+)\)", out)
    if not m:
        raise SystemExit(f"dig IXFR: no size in\n{out}")
    return int(m.group(3)), int(m.group(1))


def snapshot_validated(path):
    """Whether the snapshot at `path` is complete (format 3) and holds validated orders."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            end = b"\nJURIS-END3\n"
            if size < len(end) + 4:
                return False
            f.seek(size - len(end) - 4)
            tail = f.read()
            if tail[4:] != end:
                return False
            length = int.from_bytes(tail[:4], "big")
            f.seek(size - len(end) - 4 - length)
            footer = json.loads(f.read(length))
            return footer.get("validated") is not None
    except (OSError, ValueError):
        return False


def free_gib():
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 2**20


def restart_only(a, juris, w, names, common, keys):
    """Step 4 alone, at --names (design 0043): a follower restarts from its snapshot."""
    primary = start([juris, *common, "--config", w("primary.toml"), "--data-dir", w("primary"),
                     "--listen", f"{PRIMARY_DNS[0]}:{PRIMARY_DNS[1]}", "--orders", w("orders"),
                     "--api-listen", "none"], w("primary.log"))
    started = time.monotonic()
    until("the primary", lambda: blocked(PRIMARY_DNS, names[0]) is True, 3600)
    primary_ready = time.monotonic() - started
    name, addr = FOLLOWERS[0]
    os.makedirs(w(name), exist_ok=True)
    follow = lambda: start([juris, *common, "--data-dir", w(name), "--listen", f"{addr[0]}:{addr[1]}",  # noqa: E731
                            "--api-listen", "none", "--follow", f"{PRIMARY_XFR[0]}:{PRIMARY_XFR[1]}",
                            "--tsig-key", keys[name]], w(f"{name}.log"))
    started = time.monotonic()
    edge = follow()
    until("the follower", lambda: blocked(addr, names[-1]) is True, 3600)
    follower_ready = time.monotonic() - started
    snapshot = w(name, "fleet-snapshot.json")
    until("the follower's snapshot with validated orders", lambda: snapshot_validated(snapshot), 3600)
    snapshot_written = time.monotonic() - started
    stop(primary)
    stop(edge)
    size = os.path.getsize(snapshot)
    memory = free_gib()
    load = os.getloadavg()
    started = time.monotonic()
    edge = follow()
    until("the restarted follower", lambda: blocked(addr, names[a.names // 2], 0.2) is True, 600)
    restart = time.monotonic() - started
    stop(edge)
    report = [f"## Fleet restart from the snapshot ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
              f"{a.names:,} names for Italy ({(a.names + gen.MAX_TARGETS - 1) // gen.MAX_TARGETS} orders), "
              f"`{juris}`, 1 worker thread.", "",
              "| measure | value |", "|---|---|",
              f"| primary: start to first blocked answer | {primary_ready:.1f} s |",
              f"| follower: start (AXFR) to enforcing | {follower_ready:.1f} s |",
              f"| follower: start to its snapshot written with validated orders | {snapshot_written:.1f} s |",
              f"| **follower restarted from its snapshot ({size / 1e6:.0f} MB), primary down: exec to first blocked answer** | **{restart:.1f} s** |",
              f"| memory available before the restart | {memory:.1f} GiB |",
              f"| load average before the restart (1/5/15 min) | {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} |"]
    text = "\n".join(report) + "\n"
    print(text)
    with open(w("report.md"), "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--names", type=int, default=1_000_000)
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--restart-only", action="store_true",
                   help="only the follower's restart from its snapshot (one follower, no changes)")
    p.add_argument("--juris", default=os.path.join(HERE, "..", "target", "release", "juris"))
    p.add_argument("--work", default=os.path.join(HERE, "work", "fleet"))
    a = p.parse_args()
    juris = os.path.abspath(a.juris)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    w = lambda *parts: os.path.join(a.work, *parts)  # noqa: E731

    mmdb = w("countries.mmdb")
    gen.mmdb(mmdb, [(ITALY, "IT"), ("127.0.0.102", "DE")])
    os.makedirs(w("orders"))
    names = [f"n{i}.bench-fleet.test" for i in range(a.names)]
    for k, first in enumerate(range(0, a.names, gen.MAX_TARGETS)):
        oid = f"BENCH-BIG-{k + 1}"
        with open(w("orders", f"{oid}.json"), "w") as f:
            json.dump(gen.order_doc(oid, "IT", names[first:first + gen.MAX_TARGETS]), f)

    keys = {}
    # "probe": the bench's own key for its IXFR (a follower's key would make the primary take
    # the probe's serial as that follower's).
    for name in [n for n, _ in FOLLOWERS] + ["probe"]:
        line = run(juris, "tsig", "generate", name).splitlines()[0]
        keys[name] = line.removeprefix("--tsig-key ").strip()
    toml_keys = ", ".join(
        '{{ name = "{}", algorithm = "{}", secret = "{}" }}'.format(*k.split(":", 2)) for k in keys.values())
    followers = ", ".join(
        f'{{ name = "{n}", key = "{n}", notify = "{ad[0]}:{ad[1]}" }}' for n, ad in FOLLOWERS)
    os.makedirs(w("primary"))
    with open(w("primary.toml"), "w") as f:
        f.write(f'[fleet]\nxfr_listen = "{PRIMARY_XFR[0]}:{PRIMARY_XFR[1]}"\n'
                f"tsig_keys = [{toml_keys}]\nfollowers = [{followers}]\n")
    token = run(juris, "token", "create", "--role", "admin", "--name", "bench",
                "--data-dir", w("primary")).strip()
    # Unblocked names are never resolved (queries go without RD); the hints lead nowhere.
    with open(w("root.hints"), "w") as f:
        f.write(".  3600000  NS  a.root.bench.\na.root.bench.  3600000  A  127.0.0.254\n")
    common = ["serve", "--threads", "1", "--geoip", mmdb, "--root-hints", w("root.hints")]
    if a.restart_only:
        return restart_only(a, juris, w, names, common, keys)
    started = time.monotonic()
    primary = start([juris, *common, "--config", w("primary.toml"), "--data-dir", w("primary"),
                     "--listen", f"{PRIMARY_DNS[0]}:{PRIMARY_DNS[1]}", "--orders", w("orders"),
                     "--api-listen", f"{PRIMARY_API[0]}:{PRIMARY_API[1]}"], w("primary.log"))
    until("the primary", lambda: blocked(PRIMARY_DNS, names[0]) is True, 600)
    primary_ready = time.monotonic() - started

    def start_follower(name, addr):
        os.makedirs(w(name), exist_ok=True)
        return start([juris, *common, "--data-dir", w(name), "--listen", f"{addr[0]}:{addr[1]}",
                      "--api-listen", "none", "--follow", f"{PRIMARY_XFR[0]}:{PRIMARY_XFR[1]}",
                      "--tsig-key", keys[name]], w(f"{name}.log"))

    started = time.monotonic()
    edges = {name: start_follower(name, addr) for name, addr in FOLLOWERS}
    until("the followers", lambda: all(blocked(addr, names[-1]) is True for _, addr in FOLLOWERS), 900)
    followers_ready = time.monotonic() - started

    status, _ = api("POST", "/v1/orders?reason=bench", token, {
        "id": "BENCH-FLEET", "kind": "court_order", "authority": "juris bench", "jurisdictions": ["IT"],
        "action": "nxdomain", "state": "active",
        "targets": [{"type": "domain", "value": "seed.bench-change.test"}]})
    until("the change order on the followers",
          lambda: all(blocked(addr, "seed.bench-change.test") is True for _, addr in FOLLOWERS), 120)

    latencies = {name: [] for name, _ in FOLLOWERS}
    before_last = None
    for i in range(a.changes):
        name = f"c{i}.bench-change.test"
        if i == a.changes - 1:
            # The serial follows the clock (max(serial + 1, unix time)): the IXFR probe must
            # start from the serial before the last change, not from serial - 1.
            before_last = api("GET", "/v1/status", token)[1]["fleet"]["serial"]
        status, _ = api("POST", "/v1/orders/BENCH-FLEET/targets?reason=bench", token,
                        {"targets": [{"type": "domain", "value": name}]})
        t0 = time.monotonic()
        assert status == 200, status
        pending = dict(FOLLOWERS)
        while pending:
            for edge, addr in list(pending.items()):
                if blocked(addr, name, timeout=0.2) is True:
                    latencies[edge].append(time.monotonic() - t0)
                    del pending[edge]
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"change {i}: not enforced within 60 s by {sorted(pending)}")
            time.sleep(0.002)

    _, fleet = api("GET", "/v1/status", token)
    key = keys["probe"]
    algo, kname, secret = key.split(":")[1], key.split(":")[0], key.split(":", 2)[2]
    dig_key = f"{algo}:{kname}:{secret}"
    ixfr = {zone: ixfr_bytes(dig_key, zone, before_last)
            for zone in (f"orders.{SUFFIX}", f"it.{SUFFIX}")}
    shown = api("GET", "/v1/orders/BENCH-FLEET", token)[1]["fleet"]

    # Follower 1 restarts with the primary gone: from its snapshot.
    stop(primary)
    stop(edges["edge-1"])
    snapshot_bytes = os.path.getsize(w("edge-1", "fleet-snapshot.json"))
    started = time.monotonic()
    edges["edge-1"] = start_follower("edge-1", FOLLOWERS[0][1])
    until("the restarted follower", lambda: blocked(FOLLOWERS[0][1], names[a.names // 2], 0.2) is True, 600)
    restart = time.monotonic() - started

    report = [f"## Fleet SLO ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
              f"{a.names:,} names in the policy (Italy), {a.changes} single-name changes through the API, "
              f"3 followers, loopback, `{juris}`, 1 worker thread each.", "",
              "| follower | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|"]
    for name, values in latencies.items():
        report.append(f"| {name} | {pct(values, 50) * 1e3:.0f} | {pct(values, 99) * 1e3:.0f} | {max(values) * 1e3:.0f} |")
    report += ["", "| measure | value |", "|---|---|",
               f"| primary: start to first blocked answer (compile {a.names:,} names, zones) | {primary_ready:.1f} s |",
               f"| 3 followers: start (AXFR of {a.names:,} names) to enforcing | {followers_ready:.1f} s |"]
    for zone, (size, records) in ixfr.items():
        report.append(f"| IXFR of one changed name, `{zone}` | {size} bytes ({records} records) |")
    report += [f"| follower restarted from its snapshot ({snapshot_bytes / 1e6:.0f} MB), primary down: start to enforcing | {restart:.1f} s |",
               f"| primary's view of the last change (`fleet.in_force_everywhere`, missing) | {shown['in_force_everywhere']} {shown['missing']} |"]
    text = "\n".join(report) + "\n"
    print(text)
    with open(w("report.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    try:
        main()
    finally:
        for proc in PROCS:
            stop(proc)

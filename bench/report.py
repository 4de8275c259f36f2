#!/usr/bin/env python3
"""Turns bench/run's results.jsonl into the one table it prints at the end.

usage: report.py FACTS RESULTS.jsonl key=value...   (the run's knobs, for the title)
Repeated rows (scenarios 2 and 3) are summarised by their median.
"""
import json
import statistics
import sys

facts_path, results_path = sys.argv[1], sys.argv[2]
knobs = dict(a.split("=", 1) for a in sys.argv[3:])
rows = [json.loads(line) for line in open(results_path) if line.strip()]


def pick(sc, row=None, **match):
    out = []
    for r in rows:
        if r["scenario"] != sc or (row is not None and r["row"] != row):
            continue
        if all(r.get(k) == v for k, v in match.items()):
            out.append(r)
    return out


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def f(v, fmt="{:.1f}"):
    return "n/a" if v is None else fmt.format(v)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**MISSED**")


table = []  # (scenario, case, measured, compared, target, met)


def add(*cols):
    table.append(cols)


rate, rtt = knobs.get("rate", "20"), knobs.get("rtt", "40")

# 1. per-flow cap
for d in ("download", "upload"):
    plain = med(pick("1", "plain TCP", dir=d), "mbit")
    if plain is None and not pick("1", dir=d):
        continue
    sc = f"1 per-flow cap {rate} Mbit/s, {rtt} ms RTT, {d}"
    add(sc, "plain TCP (1 connection)", f(plain) + " Mbit/s", "1.00× plain", "", "")
    for n in (2, 4, 8):
        v = med(pick("1", f"iperf3 -P {n}", dir=d), "mbit")
        add(sc, f"iperf3 -P {n} (ceiling)", f(v) + " Mbit/s", f(ratio(v, plain), "{:.2f}") + "× plain", "", "")
    for n in (1, 2, 4, 8):
        v = med(pick("1", f"MTCP {n} links", dir=d), "mbit")
        if n == 1:
            add(sc, "MTCP 1 link", f(v) + " Mbit/s", f(ratio(v, plain), "{:.2f}") + "× plain", "", "")
            continue
        ceil = med(pick("1", f"iperf3 -P {n}", dir=d), "mbit")
        r = ratio(v, ceil)
        add(sc, f"MTCP {n} links", f(v) + " Mbit/s",
            f"{f(ratio(v, plain), '{:.2f}')}× plain, {f(r, '{:.2f}')}× iperf3 -P {n}",
            f"≥ 0.95× iperf3 -P {n}", verdict(None if r is None else r >= 0.95))
    for n in (2, 4, 8):
        rs = pick("1", f"kernel MPTCP {n} subflows", dir=d)
        if rs:
            v = med(rs, "mbit")
            ceil = med(pick("1", f"iperf3 -P {n}", dir=d), "mbit")
            add(sc, f"kernel MPTCP {n} subflows", f(v) + " Mbit/s",
                f"{f(ratio(v, ceil), '{:.2f}')}× iperf3 -P {n}", "(reference)", "")
for r in pick("1", "kernel MPTCP"):
    add("1 per-flow cap", "kernel MPTCP", r.get("note", ""), "", "", "")

# 2. loopback throughput and CPU
names = {"direct": "direct", "socat1": "1 socat relay", "socat2": "2 chained socat relays",
         "mtcp1": "MTCP 1 link", "mtcp4": "MTCP 4 links"}
for d in ("down", "up"):
    if not pick("2", dir=d):
        continue
    sc = f"2 loopback, 1 GiB {'download' if d == 'down' else 'upload'} (median of {knobs.get('reps', '?')})"
    s2thr = med(pick("2", "socat2", dir=d), "mbit")
    s2cpu = med(pick("2", "socat2", dir=d), "cpu")
    for k in ("direct", "socat1", "socat2", "mtcp1", "mtcp4"):
        rs = pick("2", k, dir=d)
        if not rs:
            continue
        thr, cpu = med(rs, "mbit"), med(rs, "cpu")
        meas = f"{f(thr, '{:.0f}')} Mbit/s, " + ("no relay" if k == "direct" else f"{f(cpu, '{:.2f}')} CPU-s/GiB")
        cmp_, target, ok = "", "", ""
        if k in ("mtcp1", "mtcp4"):
            rt, rc = ratio(thr, s2thr), ratio(cpu, s2cpu)
            cmp_ = f"{f(rt, '{:.2f}')}× throughput, {f(rc, '{:.2f}')}× CPU of 2 socats"
            if k == "mtcp4":
                target = "≥ 0.7× throughput at ≤ 1.5× CPU"
                ok = verdict(None if rt is None or rc is None else (rt >= 0.7 and rc <= 1.5))
        add(sc, names[k], meas, cmp_, target, ok)

# 3. latency
if pick("3"):
    sc = f"3 ping-pong 64 B, loopback (median of {knobs.get('reps', '?')} × 20000)"
    d50 = med(pick("3", "direct"), "p50")
    s50 = med(pick("3", "socat2"), "p50")
    r50 = med(pick("3", "relay2"), "p50")
    for k, name in (("direct", "direct"),
                    ("relay2", "2 chained minimal relays (the floor)"),
                    ("socat2", "2 chained socat relays"),
                    ("mtcp1", "MTCP 1 link"), ("mtcp4", "MTCP 4 links")):
        rs = pick("3", k)
        if not rs:
            continue
        p50, p99 = med(rs, "p50"), med(rs, "p99")
        cmp_, target, ok = "", "", ""
        if k != "direct" and d50 is not None:
            cmp_ = f"+{p50 - d50:.1f} µs p50"
        if k.startswith("mtcp") and d50 is not None:
            others = [f"{what}: +{x - d50:.1f}" for what, x in
                      (("floor", r50), ("2 socats", s50)) if x is not None]
            if others:
                cmp_ += f" ({', '.join(others)})"
            target = "+≤ 50 µs p50"
            ok = verdict(p50 - d50 <= 50)
        add(sc, name, f"p50 {f(p50)} µs, p99 {f(p99)} µs", cmp_, target, ok)

# 4. 0-RTT
if pick("4"):
    sc = f"4 0-RTT: 100 sequential connect + 64 B request/response, {rtt} ms RTT"
    rtt_ms = float(rtt)
    for r in pick("4"):
        syn_what = "SYNs to the backend" if r["row"] == "direct" else "SYNs to the server port"
        meas = f"TTFB p50 {f(r['ttfb_p50'])} ms, p90 {f(r['ttfb_p90'])} ms; {r['syns']} {syn_what}"
        target, ok = "", ""
        if "zero_rtt=true" in r["row"]:
            target = f"TTFB ≤ {rtt_ms + 5:.0f} ms, 0 SYNs"
            ok = verdict(r["ttfb_p50"] <= rtt_ms + 5 and r["syns"] == 0)
        add(sc, r["row"], meas, f"{r['ttfb_p50'] / rtt_ms:.2f} RTT", target, ok)

# 5. heterogeneous links
for d in ("download", "upload"):
    rs = pick("5", dir=d)
    if not rs:
        continue
    sc = f"5 heterogeneous links 20/20/20/5 Mbit/s (sum 65), {d}"
    for r in rs:
        v = r["mbit"]
        rr = ratio(v, r["caps"])
        target, ok = "", ""
        if r["row"].endswith("adaptive"):
            target = "≥ 0.85× sum of caps"
            ok = verdict(None if rr is None else rr >= 0.85)
        add(sc, r["row"], f(v) + " Mbit/s", f(rr, "{:.2f}") + "× sum of caps", target, ok)

# 6 and 7. scale: many echo streams at once
def scale_row(sc, r, rss_limit):
    meas = (f"{r['ok']}/{r['streams']} checksums equal ({r['mismatch']} differ, {r['failed']} failed) "
            f"in {r['secs']:.1f} s")
    add(sc, r["row"], meas,
        f"peak RSS client {r['rss_client']:.0f} MiB, server {r['rss_server']:.0f} MiB; "
        f"threads client {r['threads_client']}, server {r['threads_server']}",
        f"all equal; RSS ≤ {rss_limit} MiB per daemon",
        verdict(r["ok"] == r["streams"] and r["rss_client"] <= rss_limit
                and r["rss_server"] <= rss_limit))


for r in pick("6"):
    scale_row(f"6 scale: {r['streams']} concurrent 1 MiB echo streams, loopback", r, 200)

# 7. ten thousand streams
for r in pick("7"):
    if "streams" in r:
        scale_row(f"7 scale: {r['streams']} concurrent 64 KiB echo streams, loopback", r, 512)
small = pick("7", "rr 1000")
big = pick("7", "rr big")
if small and big:
    s, b = small[0], big[0]
    sc = "7 request/response, 64 B, loopback"
    add(sc, "MTCP 4 links, 1000 connections", f"{s['rps']:.0f} requests/s ({s['failed']} failed)", "", "", "")
    rr = ratio(b["rps"], s["rps"])
    add(sc, f"MTCP 4 links, {b['conns']} connections", f"{b['rps']:.0f} requests/s ({b['failed']} failed)",
        f(rr, "{:.2f}") + "× the rate at 1000", "≥ 0.5× the rate at 1000",
        verdict(None if rr is None else rr >= 0.5 and b["failed"] == 0))

# L. lossy path: throughput rows (median and range of the rounds), then
# small requests (time to first byte).
def reinjected(rs):
    """'; reinjected R %, duplicated D % of N MB' over the rows that counted them."""
    def total(key):
        return sum(r[key] for r in rs if isinstance(r.get(key), int))
    sent = total("sent")
    if not sent:
        return ""
    size = f"{sent / 1e6:.1f} MB" if sent >= 1e6 else f"{sent / 1e3:.1f} kB"
    return (f"; reinjected {100 * total('reinjected') / sent:.2f} %, "
            f"duplicated {100 * total('duplicated') / sent:.2f} % of {size}")


def l_row(sc, name, rs, plain, iperf, mptcp, n):
    vals = sorted(r["mbit"] for r in rs if r.get("mbit") is not None)
    v = med(rs, "mbit")
    spread = f" ({vals[0]:.1f}–{vals[-1]:.1f}, {len(vals)} rounds)" if len(vals) > 1 else ""
    cmp_ = f(ratio(v, plain), "{:.2f}") + "× plain"
    target, ok = "", ""
    if name.startswith("MTCP"):
        to_iperf, to_mptcp = ratio(v, iperf), ratio(v, mptcp)
        cmp_ += f", {f(to_iperf, '{:.2f}')}× iperf3 -P {n}"
        if mptcp is not None:
            cmp_ += f", {f(to_mptcp, '{:.2f}')}× kernel MPTCP"
        if name == f"MTCP {n} links":
            target = "≥ 1.0× MPTCP, ≥ 0.95× iperf3 (medians)"
            ok = verdict(None if to_iperf is None else
                         to_iperf >= 0.95 and (to_mptcp is None or to_mptcp >= 1.0))
    add(sc, name, f(v) + " Mbit/s" + spread + reinjected(rs), cmp_, target, ok)


if pick("L"):
    for r in pick("L", "kernel MPTCP"):
        add("L lossy path", "kernel MPTCP", r["note"], "", "", "")
    cases = []
    for r in pick("L"):
        if "dir" in r and (r["loss"], r["dir"]) not in cases:
            cases.append((r["loss"], r["dir"]))
    for loss, dir_ in cases:
        sc = f"L {loss}% random loss, {rtt} ms RTT, no cap, {dir_}"
        at = dict(loss=loss, dir=dir_)
        plain = med(pick("L", "plain TCP", **at), "mbit")
        add(sc, "plain TCP", f(plain) + " Mbit/s", "", "", "")
        links = sorted({r["n"] for r in pick("L", **at) if r.get("n", 1) > 1})
        for n in links:
            iperf = med(pick("L", f"iperf3 -P {n}", **at), "mbit")
            mptcp = med(pick("L", f"kernel MPTCP {n} subflows", **at), "mbit")
            names = []
            for r in pick("L", n=n, **at):
                if r["row"] not in names:
                    names.append(r["row"])
            for name in names:
                l_row(sc, name, pick("L", name, n=n, **at), plain, iperf, mptcp, n)
    for r in pick("L"):
        if "ttfb" not in r:
            continue
        sc = f"L {r['loss']}% random loss, {rtt} ms RTT: small requests"
        t = r["ttfb"]
        rtt_ms = float(rtt)
        target, ok = "", ""
        if r["row"] != "small requests, direct":
            target = f"p50 ≤ {rtt_ms + 5:.0f} ms, p99 ≤ {rtt_ms + 20:.0f} ms"
            ok = verdict(t["p50"] <= rtt_ms + 5 and t["p99"] <= rtt_ms + 20)
        add(sc, r["row"], f"TTFB p50 {f(t['p50'])} ms, p90 {f(t['p90'])} ms, p99 {f(t['p99'])} ms, "
            f"max {f(t['max'])} ms ({t['n']} requests){reinjected([r])}",
            f"{t['p50'] / rtt_ms:.2f} RTT p50", target, ok)

# F. a fleet behind HAProxy
for r in pick("F", "haproxy"):
    add("F fleet behind HAProxy", "HAProxy", r.get("note", ""), "", "", "")
for r in pick("F", "placement"):
    add("F fleet behind HAProxy", "links per server behind HAProxy (2 clients × 4)",
        f"{r['on1']} and {r['on2']}", "", "4 and 4: each session on one server",
        verdict(r["on1"] == 4 and r["on2"] == 4))
for d in ("down", "up"):
    alone, hap = pick("F", "bulk alone", dir=d), pick("F", "bulk haproxy", dir=d)
    if not alone or not hap:
        continue
    sc = (f"F 1 GiB {'download' if d == 'down' else 'upload'}, 4 links, loopback "
          f"(median of {knobs.get('reps', '?')})")
    at, ac = med(alone, "mbit"), med(alone, "cpu")
    ht, hc = med(hap, "mbit"), med(hap, "cpu")
    add(sc, "one mtcp server alone", f"{f(at, '{:.0f}')} Mbit/s, {f(ac, '{:.2f}')} CPU-s/GiB", "", "", "")
    add(sc, "HAProxy + 2 mtcp servers", f"{f(ht, '{:.0f}')} Mbit/s, {f(hc, '{:.2f}')} CPU-s/GiB",
        f"{f(ratio(ht, at), '{:.2f}')}× throughput, {f(ratio(hc, ac), '{:.2f}')}× CPU of one server alone",
        "", "")
alone, hap = pick("F", "rr alone"), pick("F", "rr haproxy")
if alone and hap:
    sc = (f"F request/response 64 B, 2 clients × {alone[0]['conns'] // 2} connections, loopback "
          f"(median of {knobs.get('reps', '?')})")
    a, h = med(alone, "rps"), med(hap, "rps")
    failed = sum(r["failed"] for r in alone + hap)
    add(sc, "one mtcp server alone", f"{f(a, '{:.0f}')} requests/s", "", "", "")
    add(sc, "HAProxy + 2 mtcp servers", f"{f(h, '{:.0f}')} requests/s",
        f"{f(ratio(h, a), '{:.2f}')}× one server alone ({failed} connections failed in all)", "", "")
# R. request/response and bulk vs what a user would otherwise deploy
for r in pick("R", "haproxy"):
    add("R relays on loopback", "HAProxy", r.get("note", ""), "", "", "")
r_names = {"haproxy2": "2 chained HAProxys", "socat2": "2 chained socats",
           "mtcp4": "MTCP 4 links", "mtcp4s": "MTCP 4 links, secret"}
r_conns = sorted({r["conns"] for r in pick("R", what="rr")})
for conns in r_conns:
    sc = f"R request/response 64 B, {conns} connections, loopback (median of {len(pick('R', 'haproxy2', what='rr', conns=conns))})"
    hap = med(pick("R", "haproxy2", what="rr", conns=conns), "rps")
    for k, name in r_names.items():
        rs = pick("R", k, what="rr", conns=conns)
        if not rs:
            continue
        rps = med(rs, "rps")
        per100k = med([{"c": 1e5 * r["cpu"] / r["requests"]} for r in rs if r["requests"]], "c")
        failed = sum(r["failed"] for r in rs)
        target, ok, cmp_ = "", "", ""
        if k != "haproxy2":
            x = ratio(rps, hap)
            cmp_ = f"{f(x, '{:.2f}')}× HAProxy pair"
            want = {"mtcp4": 0.9, "mtcp4s": 0.8}.get(k)
            if want:
                target = f"≥ {want}× HAProxy pair"
                ok = verdict(None if x is None else x >= want)
        add(sc, name, f"{f(rps, '{:.0f}')} req/s, {f(per100k, '{:.2f}')} CPU-s/100k req"
            + (f", {failed} failed" if failed else ""), cmp_, target, ok)
for d in ("down", "up"):
    if not pick("R", what="bulk", dir=d):
        continue
    sc = (f"R {knobs.get('r_bulk', '1G')} {'download' if d == 'down' else 'upload'}, loopback "
          f"(median of {len(pick('R', 'haproxy2', what='bulk', dir=d))})")
    def bulk(k):
        rs = pick("R", k, what="bulk", dir=d)
        if not rs:
            return None, None
        return med(rs, "mbit"), med([{"c": r["cpu"] * 2**30 / r["bytes"]} for r in rs], "c")
    ht, _ = bulk("haproxy2")
    pt, pc = bulk("mtcp4")
    for k, name in r_names.items():
        thr, cpu = bulk(k)
        if thr is None:
            continue
        cmp_, target, ok = "", "", ""
        if k.startswith("mtcp"):
            x = ratio(thr, ht)
            cmp_ = f"{f(x, '{:.2f}')}× HAProxy pair"
            target, good = "≥ 1.0× HAProxy pair", None if x is None else x >= 1.0
            if k == "mtcp4s":
                et, ec = ratio(thr, pt), ratio(cpu, pc)
                cmp_ += f"; {f(et, '{:.2f}')}× throughput, {f(ec, '{:.2f}')}× CPU of plain"
                target += "; ≥ 0.85× plain at ≤ 1.3× CPU"
                if good is not None and et is not None and ec is not None:
                    good = good and et >= 0.85 and ec <= 1.3
            ok = verdict(good)
        add(sc, name, f"{f(thr, '{:.0f}')} Mbit/s, {f(cpu, '{:.2f}')} CPU-s/GiB", cmp_, target, ok)
# B. bonded uplinks of unequal rate and RTT
bed = pick("B", "bed")
if bed:
    b = bed[0]
    bed_name = (f"A {b['rate_a']} Mbit/s {b['set_rtt_a']} ms RTT + B {b['rate_b']} Mbit/s "
                f"{b['set_rtt_b']} ms RTT (connect: {b['rtt_a']} / {b['rtt_b']} ms)")
    for d in ("download", "upload"):
        if not pick("B", "MTCP 2 paths x 2 links", dir=d):
            continue
        n = len(pick("B", "plain TCP uplink A", dir=d))
        sc = (f"B bonded uplinks {bed_name}, {d}, steady state (iperf3 -t {knobs.get('b_t', '?')} "
              f"-O {knobs.get('b_omit', '?')})" + (f", median of {n}" if n > 1 else ""))
        va = med(pick("B", "plain TCP uplink A", dir=d), "mbit")
        vb = med(pick("B", "plain TCP uplink B", dir=d), "mbit")
        total = None if va is None or vb is None else va + vb
        vm = med(pick("B", "kernel MPTCP 2 subflows", dir=d), "mbit")

        def split(row):
            rs = pick("B", row, dir=d)
            a, bb = med(rs, "bytes_a"), med(rs, "bytes_b")
            if not a and not bb:
                return ""
            return f"; on the wire A {a / 2**20:.0f} MiB, B {bb / 2**20:.0f} MiB ({100 * bb / (a + bb):.0f} % on B)"

        def startup(row):
            v = med(pick("B", row, dir=d), "startup_mbit")
            return "" if v is None else f"; start-up: {v:.1f} Mbit/s in the first 2 s"

        add(sc, "plain TCP, uplink A alone", f(va) + " Mbit/s", "", "", "")
        add(sc, "plain TCP, uplink B alone", f(vb) + " Mbit/s", "", "", "")
        add(sc, "sum of A and B (reference)", f(total) + " Mbit/s", "1.00× sum", "", "")
        if vm is not None:
            add(sc, "kernel MPTCP, 2 subflows (one per uplink)", f(vm) + " Mbit/s",
                f"{f(ratio(vm, total), '{:.2f}')}× sum" + split("kernel MPTCP 2 subflows")
                + startup("kernel MPTCP 2 subflows"), "(reference)", "")
        vt = med(pick("B", "MTCP 2 paths x 2 links", dir=d), "mbit")
        rs_, rm_ = ratio(vt, total), ratio(vt, vm)
        cmp_ = f"{f(rs_, '{:.2f}')}× sum"
        if vm is not None:
            cmp_ += f", {f(rm_, '{:.2f}')}× MPTCP"
        ok = None if rs_ is None else (rs_ >= 0.9 and (rm_ is None or rm_ >= 1.0))
        add(sc, "MTCP, 2 paths × 2 links (adaptive)", f(vt) + " Mbit/s", cmp_ + split("MTCP 2 paths x 2 links") + startup("MTCP 2 paths x 2 links"),
            "≥ 0.9× sum and ≥ MPTCP", verdict(ok))
    for r in pick("B", "kernel MPTCP"):
        add("B bonded uplinks", "kernel MPTCP", r.get("note", ""), "", "", "")


def lost(x):
    if x["intact"]:
        return "sha256 equal, 0 bytes lost"
    if x["bytes"] < x["expected"]:
        return f"{x['expected'] - x['bytes']} bytes lost"
    return "sha256 differs (bytes corrupted)"


for r in pick("B", "MTCP failover") + pick("B", "MTCP backup"):
    x, t = r["xfer"], r["timeline"]
    size = f"{x['expected'] / 2**20:.0f} MiB"
    backup = r["backup"]
    sc = (f"B {'backup: path B `backup = true`' if backup else 'failover: both paths carry data'}; "
          f"uplink A blackholed {r['blackhole_s']} s mid-transfer (keepalive_timeout_ms {r['ka_timeout_ms']})")
    meas = f"{size} {r['dir']}, {lost(x)}; longest stall {t['stall_s']:.2f} s"
    if t["stall_after_blackhole_s"] is not None and abs(t["stall_after_blackhole_s"]) < r["blackhole_s"]:
        meas += f" (from {t['stall_after_blackhole_s']:+.2f} s after the blackhole)"
    back = f"after restore: uplink A at half its rate in {f(t['a_back_s'], '{:.2f}')} s"
    if backup:
        meas = (f"{size} {r['dir']}, {lost(x)}; while A was up, uplink B carried "
                f"{t['b_bytes_before'] / 1024:.1f} KiB ({t['b_kbit_before']:.0f} kbit/s, both directions); "
                f"takeover: stall {t['stall_s']:.2f} s, B at half its rate {f(t['b_half_s'], '{:.2f}')} s "
                f"after the blackhole")
        back += f", uplink B below a tenth of its rate in {f(t['b_quiet_s'], '{:.2f}')} s"
    else:
        back = (f"before: A {f(t['a_mbit_before'])} + B {f(t['b_mbit_before'])} Mbit/s; " + back)
    # The limits: a stall of at most keepalive_timeout_ms plus a
    # second; a backup at work within that too, and idle again (failback)
    # within a few seconds of the primary's return.
    most = r["ka_timeout_ms"] / 1000 + 1
    target = f"0 bytes lost; stall ≤ {most:g} s"
    ok = x["intact"] and t["stall_s"] <= most
    if backup:
        target += f"; B at work ≤ {most:g} s; B idle again ≤ 5 s"
        ok = ok and t["b_half_s"] is not None and t["b_half_s"] <= most
        ok = ok and t["b_quiet_s"] is not None and t["b_quiet_s"] <= 5
    add(sc, f"MTCP, 2 paths × 2 links, {r['dir']}", meas, back, target, verdict(ok))

print()
print("## MTCP benchmark (bench/run)")
print()
for line in open(facts_path):
    print("    " + line.rstrip())
print()
print("| scenario | case | measured | compared | target | |")
print("|---|---|---|---|---|---|")
last = None
for sc, case, meas, cmp_, target, ok in table:
    print(f"| {sc if sc != last else ''} | {case} | {meas} | {cmp_} | {target} | {ok} |")
    last = sc

#!/usr/bin/env python3
"""Scenario B's clocks: what each uplink carried around a blackhole.

usage:
  bond-timeline.py sample OUT IFACE...     # in the client namespace: every 50 ms,
                                           # one line "unix_s rx tx rx tx ..." per sample
  bond-timeline.py analyse SAMPLES XFER_JSON DIR T_BLACKHOLE T_RESTORE CAP_A CAP_B

`analyse` reads the samples of the two uplinks (A first, then B), the
transfer's JSON line (loadgen xfer) and the wall-clock times at which
uplink A was blackholed and restored, and prints one JSON line:

  a_mbit_before, b_mbit_before  data-direction rate of each uplink over the
                                2 s before the blackhole
  b_bytes_before                bytes uplink B carried (both directions,
                                headers included) from the transfer's first
                                second to the blackhole, and b_kbit_before
                                the same as a rate
  stall_s                       the receiver's longest gap without data
  stall_after_blackhole_s       when that gap began, after the blackhole
  b_half_s                      blackhole -> uplink B at half its rate or more
                                (250 ms windows)
  a_back_s                      restore -> uplink A at half its rate or more
  b_quiet_s                     restore -> uplink B below a tenth of its rate
                                for the rest of the transfer (null if never)
  end_after_restore_s           how long the transfer went on after the
                                restore (the window those two were seen in)
Rates are in the data's direction: rx of the client's interfaces for a
download, tx for an upload.
"""
import json
import sys
import time

WINDOW = 0.25  # seconds over which a rate is taken


def sample(out, ifaces):
    paths = [(f"/sys/class/net/{i}/statistics/rx_bytes", f"/sys/class/net/{i}/statistics/tx_bytes")
             for i in ifaces]
    with open(out, "w", buffering=1) as f:
        while True:
            vals = []
            for rx, tx in paths:
                with open(rx) as a, open(tx) as b:
                    vals += [a.read().strip(), b.read().strip()]
            f.write(f"{time.time():.4f} {' '.join(vals)}\n")
            time.sleep(0.05)


def analyse(samples_path, xfer_json, direction, t_bh, t_rs, cap_a, cap_b):
    rows = []
    for line in open(samples_path):
        p = line.split()
        if len(p) == 5:
            rows.append([float(x) for x in p])
    x = json.loads(xfer_json)
    t_end = x["start"] + x["secs"]
    col = 1 if direction == "download" else 2  # rx : tx of uplink A; B is +2

    def rate(t0, t1, c):  # Mbit/s of column c between the samples nearest t0 and t1
        s0 = min(rows, key=lambda r: abs(r[0] - t0))
        s1 = min(rows, key=lambda r: abs(r[0] - t1))
        return None if s1[0] <= s0[0] else (s1[c] - s0[c]) * 8 / (s1[0] - s0[0]) / 1e6

    def windows(t_from, t_to, c):  # (t, rate) of every window starting in [t_from, t_to)
        out = []
        for r in rows:
            if t_from <= r[0] < t_to - WINDOW:
                v = rate(r[0], r[0] + WINDOW, c)
                if v is not None:
                    out.append((r[0], v))
        return out

    res = {
        "a_mbit_before": rate(t_bh - 2, t_bh, col),
        "b_mbit_before": rate(t_bh - 2, t_bh, col + 2),
        "stall_s": x["max_gap_ms"] / 1e3,
        "stall_after_blackhole_s": x["gap_start"] - t_bh,
        "end_after_restore_s": t_end - t_rs,
    }
    # Uplink B, both directions, from the transfer's first second (the links
    # are up and the transfer under way) until the blackhole.
    t0 = x["start"] + 1
    s0 = min(rows, key=lambda r: abs(r[0] - t0))
    s1 = min(rows, key=lambda r: abs(r[0] - t_bh))
    b_bytes = (s1[3] + s1[4]) - (s0[3] + s0[4])
    res["b_bytes_before"] = b_bytes
    res["b_kbit_before"] = b_bytes * 8 / max(s1[0] - s0[0], 1e-9) / 1e3
    res["b_half_s"] = next((t - t_bh for t, v in windows(t_bh, t_rs, col + 2) if v >= cap_b / 2), None)
    res["a_back_s"] = next((t - t_rs for t, v in windows(t_rs, t_end, col) if v >= cap_a / 2), None)
    after = windows(t_rs, t_end, col + 2)
    quiet = None
    for i, (t, v) in enumerate(after):
        if all(w < cap_b / 10 for _, w in after[i:]):
            quiet = t - t_rs
            break
    res["b_quiet_s"] = quiet if after else None
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "analyse":
        a = sys.argv[2:]
        analyse(a[0], a[1], a[2], float(a[3]), float(a[4]), float(a[5]), float(a[6]))
    else:
        sys.exit(__doc__)

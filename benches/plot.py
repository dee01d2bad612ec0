#!/usr/bin/env python3
"""Scaling plots for BENCHMARKS.md from the record `cargo bench --bench kvm_routes` saves.

    python3 benches/plot.py [target/vmsi-bench/results.json] [docs/bench]

Writes p1_update.png (one route update against R routes in the VM) and p4_bringup.png
(bring-up of one device against its vector count N). Needs matplotlib.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "ours": dict(color="#1b7837", marker="o"),
    "full-rebuild": dict(color="#b2182b", marker="s"),
    "linear-scan": dict(color="#2166ac", marker="^"),
}


def series(rows, group, field):
    out = {}
    for r in rows:
        if r["group"] == group and r[field] > 0:
            out.setdefault(r["design"], []).append((r["x"], r[field]))
    return {d: sorted(v) for d, v in out.items()}


def axes_log(ax, xlabel, ylabel):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def plot(ax, data, label_fmt="{}"):
    for design, points in data.items():
        if design not in STYLE:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, label=label_fmt.format(design), **STYLE[design])


def ns_formatter(ax):
    def fmt(y, _pos):
        if y >= 1e6:
            return f"{y / 1e6:g} ms"
        if y >= 1e3:
            return f"{y / 1e3:g} µs"
        return f"{y:g} ns"

    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(fmt))


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "target/vmsi-bench/results.json")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/bench")
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(src.read_text())

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    plot(a, series(rows, "P1", "mean_ns"))
    axes_log(a, "routes in the VM (R)", "time per update (userspace)")
    ns_formatter(a)
    a.set_title("P1: one guest write that changes a route")
    a.legend()
    ours = dict(series(rows, "P1", "mean_ns").get("ours", []))
    for design in ("full-rebuild", "linear-scan"):
        pts = [(x, y / ours[x]) for x, y in series(rows, "P1", "mean_ns").get(design, []) if x in ours]
        if pts:
            xs, ys = zip(*pts)
            b.plot(xs, ys, label=f"{design} / ours", **STYLE[design])
    axes_log(b, "routes in the VM (R)", "baseline time / our time")
    b.set_title("P1: speed-up of ours (same process)")
    b.legend()
    fig.tight_layout()
    fig.savefig(out / "p1_update.png", dpi=110)

    fig, (a, m, b) = plt.subplots(1, 3, figsize=(16, 4.4))
    plot(a, series(rows, "P4", "mean_ns"))
    axes_log(a, "vectors brought up (N)", "bring-up time (userspace, measured)")
    ns_formatter(a)
    a.set_title("P4: bring-up of one device, userspace")
    a.legend()
    total = {}
    for r in rows:
        if r["group"] == "P4" and r["mean_ns"] > 0:
            total.setdefault(r["design"], []).append((r["x"], r["mean_ns"] + r["kernel_ns"]))
    plot(m, {d: sorted(v) for d, v in total.items()})
    axes_log(m, "vectors brought up (N)", "userspace + modelled kernel time")
    ns_formatter(m)
    m.set_title("P4: with the KVM calls' cost (anchor model)")
    m.legend()
    plot(b, series(rows, "P4", "bytes"))
    axes_log(b, "vectors brought up (N)", "bytes handed to KVM_SET_GSI_ROUTING")
    b.set_title("P4: bytes the kernel copies in")
    b.legend()
    fig.tight_layout()
    fig.savefig(out / "p4_bringup.png", dpi=110)
    print(f"wrote {out / 'p1_update.png'} and {out / 'p4_bringup.png'}")


if __name__ == "__main__":
    main()

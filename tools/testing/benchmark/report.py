#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Turns a benchmark run (OUT/raw.json, written by guest.py) into
OUT/summary.json (every run, the medians and the ratios), OUT/bench.md (the
tables a person reads) and OUT/bench.png (the chart).

Usage: report.py OUT
"""

import json
import os
import statistics
import sys

TOOLS = {
    "iscsi-perf": "libiscsi iscsi-perf (user-space initiator, reads only)",
    "fio-iscsi": "fio (libaio, O_DIRECT) through the kernel's iSCSI initiator (open-iscsi)",
    "fio-local": "fio (libaio, O_DIRECT) through a local SCSI host: scst_local against tcm_loop",
    "fio-user": "fio (libaio, O_DIRECT) through scst_local: the scst_user file handler "
                "(user space) against vdisk_fileio (kernel) on the same file",
    "fio-user-iscsi": "fio (libaio, O_DIRECT) through the kernel's iSCSI initiator: the "
                      "scst_user file handler (its buffers lent to iSCSI) against "
                      "vdisk_fileio on the same file",
    "fio-srp": "fio (libaio, O_DIRECT) through the kernel's SRP initiator (ib_srp) over soft "
               "RoCE (rxe): scst-rs' srpt against LIO's ib_srpt",
}
# Per tool: ours first, then the peers it is compared with.
TARGETS = {
    "iscsi-perf": ["scst-rs", "LIO", "tgt", "ceiling"],
    "fio-iscsi": ["scst-rs", "LIO", "tgt", "ceiling"],
    "fio-local": ["scst_local", "tcm_loop"],
    "fio-user": ["scst_user", "vdisk_fileio"],
    "fio-user-iscsi": ["scst_user", "vdisk_fileio"],
    "fio-srp": ["scst-rs", "LIO"],
}
FIGURES = ["iops", "bw_bytes", "lat_mean_us", "lat_p99_us", "ctxt_per_io", "cpu_us_per_io"]


def median_of(runs, figure):
    values = [r[figure] for r in runs if r.get(figure) is not None]
    return statistics.median(values) if values else None


def summarize(record):
    """Medians over rounds per (tool, workload, backing, target), and the
    ratios of scst-rs to each peer for the same tool, workload and backing
    (the ceiling has no backing and stands beside both)."""
    groups = {}
    for run in record["runs"]:
        key = (run["tool"], run["workload"], run["backing"], run["target"])
        groups.setdefault(key, []).append(run)
    medians = []
    for (tool, workload, backing, target), runs in groups.items():
        ok = [r for r in runs if "error" not in r]
        entry = {"tool": tool, "workload": workload, "backing": backing, "target": target,
                 "runs": len(runs), "failed": len(runs) - len(ok)}
        for figure in FIGURES:
            entry[figure] = median_of(ok, figure)
        if ok and entry["iops"] is not None:
            iops = [r["iops"] for r in ok]
            entry["iops_min"], entry["iops_max"] = min(iops), max(iops)
        medians.append(entry)
    medians.sort(key=lambda e: (list(TOOLS).index(e["tool"]) if e["tool"] in TOOLS else 9,
                                e["workload"], e["backing"], e["target"]))

    def find(tool, workload, backing, target):
        return lookup(medians, tool, workload, backing, target)

    ratios = []
    for e in medians:
        ours, *peers = TARGETS.get(e["tool"], [None])
        if e["target"] != ours:
            continue
        for peer in peers:
            other = find(e["tool"], e["workload"], e["backing"], peer)
            if not other:
                continue
            ratio = {"tool": e["tool"], "workload": e["workload"], "backing": e["backing"],
                     "ours": ours, "peer": peer,
                     "iops": _ratio(e["iops"], other["iops"])}
            if e.get("lat_mean_us") is not None and other.get("lat_mean_us"):
                ratio["lat_mean"] = _ratio(e["lat_mean_us"], other["lat_mean_us"])
            if e.get("lat_p99_us") and other.get("lat_p99_us"):
                ratio["lat_p99"] = _ratio(e["lat_p99_us"], other["lat_p99_us"])
            ratios.append(ratio)
    return {"medians": medians, "ratios": ratios, "goals": goals(find)}


def lookup(medians, tool, workload, backing, target):
    """The median entry of a target for a tool, workload and backing; the
    ceiling's (it has no backing) for either backing."""
    for e in medians:
        if (e["tool"], e["workload"], e["target"]) == (tool, workload, target) and \
                (e["backing"] == backing or target == "ceiling"):
            return e
    return None


def _ratio(a, b):
    return a / b if a is not None and b else None


def goals(find):
    """The issue's targets, read off the medians (figures, not verdicts of
    a test)."""
    out = []

    def goal(text, tool, workload, backing, peer, figure, want, higher_is_better=True,
             us="scst-rs"):
        ours = find(tool, workload, backing, us)
        other = find(tool, workload, backing, peer)
        value = _ratio(ours and ours.get(figure), other and other.get(figure))
        met = None if value is None else (value >= want if higher_is_better else value <= want)
        out.append({"goal": text, "tool": tool, "workload": workload, "backing": backing,
                    "peer": peer, "figure": figure, "ratio": value, "want": want, "met": met})

    for backing in ["file", "null"]:
        goal(f"4 KiB QD32 random read >= 1.2x LIO ({backing})", "iscsi-perf",
             "randread-4k-qd32", backing, "LIO", "iops", 1.2)
        goal(f"4 KiB QD32 random read >= 2.5x tgt ({backing})", "iscsi-perf",
             "randread-4k-qd32", backing, "tgt", "iops", 2.5)
        goal(f"512 B QD1 mean latency <= LIO's ({backing})", "fio-iscsi",
             "randread-512-qd1", backing, "LIO", "lat_mean_us", 1.0, higher_is_better=False)
        goal(f"SRP: 4 KiB QD32 random read >= LIO's ib_srpt ({backing})", "fio-srp",
             "randread-4k-qd32", backing, "LIO", "iops", 1.0)
        goal(f"SRP: 512 B QD1 mean latency <= LIO's ib_srpt ({backing})", "fio-srp",
             "randread-512-qd1", backing, "LIO", "lat_mean_us", 1.0, higher_is_better=False)
    goal("1 MiB sequential read from the page cache >= 80% of the ceiling", "iscsi-perf",
         "read-1m-qd8", "file", "ceiling", "bw_bytes", 0.8)
    # A device with a 2 ms completion delay: what counts is how many
    # commands reach it at once.
    for workload in ["randread-4k-qd32", "randwrite-4k-qd32"]:
        goal(f"{workload} on the slow device >= LIO's (iSCSI)", "fio-iscsi", workload, "slow",
             "LIO", "iops", 1.0)
        goal(f"{workload} on the slow device >= tcm_loop's (local)", "fio-local", workload,
             "slow", "tcm_loop", "iops", 1.0, us="scst_local")
    return out


def _fmt(value, unit=""):
    if value is None:
        return "n/a"
    if unit == "MiB/s":
        return f"{value / (1 << 20):.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def markdown(record, summary):
    m = record["machine"]
    lines = [
        f"# scst-rs benchmark, {record.get('started', '?')}",
        "",
        f"Guest: Linux {m['kernel']}, {m['cpus']} vCPUs ({m['accel']}), "
        f"{m['memory_kib'] >> 10} MiB, host CPU {m['cpu_model']}. "
        f"{record['rounds']} interleaved rounds of {record['seconds']} s runs; "
        "every figure is the median over the rounds.",
        "",
        "Tools: " + ", ".join(f"{k} {v}" for k, v in m["tools"].items()) + ".",
        "",
        "## Goals",
        "",
        "| goal | scst-rs / peer | met |",
        "| --- | ---: | --- |",
    ]
    for g in summary["goals"]:
        met = {True: "yes", False: "no", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {_fmt(g['ratio'])} | {met} |")
    medians = summary["medians"]
    for tool, title in TOOLS.items():
        rows = [e for e in medians if e["tool"] == tool]
        if not rows:
            continue
        targets = TARGETS[tool]
        ours = targets[0]
        peers = targets[1:]
        lines += ["", f"## {tool}: {title}", "",
                  "IOPS (MiB/s for 1 MiB transfers); the ceiling has no backing and "
                  "appears beside both." if "ceiling" in targets else
                  "IOPS (MiB/s for 1 MiB transfers).", ""]
        head = ["workload", "backing", *targets, *(f"{ours}/{p}" for p in peers)]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("| --- | --- |" + " ---: |" * (len(head) - 2))
        for workload in sorted({e["workload"] for e in rows}):
            for backing in ["null", "file", "slow"]:
                cells = {t: lookup(rows, tool, workload, backing, t) for t in targets}
                if not cells.get(ours):
                    continue
                unit = "MiB/s" if "1m" in workload else ""
                figure = "bw_bytes" if unit else "iops"
                vals = [_fmt(cells[t] and cells[t][figure], unit) for t in targets]
                ratios = [_fmt(_ratio(cells[ours][figure], cells[p] and cells[p][figure]))
                          for p in peers]
                lines.append("| " + " | ".join([workload, backing, *vals, *ratios]) + " |")
        lat_rows = [e for e in rows if e.get("lat_p99_us")]
        if lat_rows:
            lines += ["", "Latency at QD1 (µs, mean / p99):", "",
                      "| workload | backing | " + " | ".join(targets) + " |",
                      "| --- | --- |" + " ---: |" * len(targets)]
            for workload in sorted({e["workload"] for e in lat_rows if "qd1" in e["workload"]}):
                for backing in ["null", "file", "slow"]:
                    found = [lookup(lat_rows, tool, workload, backing, t) for t in targets]
                    if not any(found):
                        continue
                    cells = [f"{_fmt(e['lat_mean_us'])} / {_fmt(e['lat_p99_us'])}" if e else "n/a"
                             for e in found]
                    lines.append(f"| {workload} | {backing} | " + " | ".join(cells) + " |")
    cost = [e for e in medians if e["workload"] == "randread-4k-qd32" and e.get("ctxt_per_io")]
    if cost:
        lines += ["", "## Cost per I/O, 4 KiB QD32 random read",
                  "", "Whole guest (initiator and target together): context switches and "
                  "busy CPU time per I/O.", "",
                  "| tool | backing | target | context switches / I/O | CPU µs / I/O |",
                  "| --- | --- | --- | ---: | ---: |"]
        for e in cost:
            lines.append(f"| {e['tool']} | {e['backing']} | {e['target']} | "
                         f"{_fmt(e['ctxt_per_io'])} | {_fmt(e['cpu_us_per_io'])} |")
    failed = [e for e in medians if e["failed"]]
    if failed:
        lines += ["", "## Failed runs", ""]
        for e in failed:
            lines.append(f"- {e['tool']} {e['workload']} {e['backing']} {e['target']}: "
                         f"{e['failed']} of {e['runs']}")
    return "\n".join(lines) + "\n"


def chart(summary, path):
    """One panel per tool and workload: the median of each target, per backing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for tool in TOOLS:
        for workload in sorted({e["workload"] for e in summary["medians"] if e["tool"] == tool}):
            panels.append((tool, workload))
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = {"scst-rs": "#1f77b4", "scst_local": "#1f77b4", "LIO": "#ff7f0e",
              "tcm_loop": "#ff7f0e", "tgt": "#2ca02c", "ceiling": "#7f7f7f",
              "scst_user": "#9467bd", "vdisk_fileio": "#1f77b4"}
    for ax, (tool, workload) in zip(axes.flat, panels):
        targets = TARGETS[tool]
        mib = "1m" in workload
        labels, values, bar_colors = [], [], []
        for backing in ["null", "file", "slow"]:
            for t in targets:
                if t == "ceiling" and backing == "file":
                    continue
                e = lookup(summary["medians"], tool, workload, backing, t)
                if e is None:
                    continue
                v = e["bw_bytes"] if mib else e["iops"]
                labels.append(t if t == "ceiling" else f"{t}\n{backing}")
                values.append((v or 0) / (1 << 20) if mib else (v or 0))
                bar_colors.append(colors.get(t, "#999999"))
        ax.bar(range(len(values)), values, color=bar_colors)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_title(f"{tool}: {workload}", fontsize=8)
        ax.set_ylabel("MiB/s" if mib else "IOPS", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out):
    with open(os.path.join(out, "raw.json")) as f:
        record = json.load(f)
    summary = summarize(record)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"machine": record["machine"], "started": record.get("started"),
                   "finished": record.get("finished"), "rounds": record["rounds"],
                   "seconds": record["seconds"], **summary, "runs": record["runs"]}, f, indent=1)
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write(markdown(record, summary))
    chart(summary, os.path.join(out, "bench.png"))
    print(f"report: {out}/bench.md, {out}/summary.json, {out}/bench.png")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

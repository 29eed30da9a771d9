#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""What 1 MiB sequential reads wait for: the target's TCP socket, seen from
both ends, while fio reads through the kernel's initiator (guest side).

    tools/testing/guest-run -- tools/testing/benchmark/window_probe.py \
        [--mtu N] [--rmem-max BYTES]

scst-rs, LIO and tgt each serve the same tmpfs file; the kernel's
initiator logs in to all three. For each target in turn (ROUNDS times) fio
reads 1 MiB blocks at QD8 for 4 s while `ss -tmi` samples the connection
every 250 ms. Printed per run: the throughput, the TCP counters that moved
(nstat), and per target socket the share of its busy time it was limited
by the receiver's window (rwnd_limited), how often the window it last
heard was smaller than one segment (snd_wnd < mss) with data waiting
(notsent), and the longest silence (lastsnd) seen in such a state: a
sender that cannot send a full segment into the window waits for its
persist timer (the retransmission timeout, 200 ms at least) unless the
receiver opens the window by itself. Not a test: a measurement to read.
"""

import argparse
import contextlib
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guest"))

import guest as bench  # noqa: E402
import peers  # noqa: E402
from conftest import mgmt, sh  # noqa: E402

SECONDS = 4
FIELD = re.compile(r"\b(snd_wnd|mss|notsent|lastsnd):(\d+)")
RWND = re.compile(r"rwnd_limited:\d+ms\(([\d.]+)%\)")


def nstat():
    counters = {}
    for line in sh("nstat", "-az", check=False).stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1].isdigit():
            counters[fields[0]] = int(fields[1])
    return counters


def sample(port, stop, samples):
    """The target side's line of `ss -tmi` for connections to `port`."""
    while not stop.is_set():
        out = sh("ss", "-tmiHn", "state", "established", f"( sport = :{port} )",
                 check=False).stdout
        samples.append(" ".join(out.split()))
        time.sleep(0.25)


def probe(name, disk, port):
    before = nstat()
    stop = threading.Event()
    samples = []
    sampler = threading.Thread(target=sample, args=(port, stop, samples))
    sampler.start()
    try:
        figures = bench.run_fio(disk, "read-1m-qd8", SECONDS)
    finally:
        stop.set()
        sampler.join()
    after = nstat()
    stuck = 0
    longest = 0
    rwnd = "?"
    for line in samples:
        fields = dict((k, int(v)) for k, v in FIELD.findall(line))
        if fields.get("notsent", 0) and fields.get("snd_wnd", 1 << 30) < fields.get("mss", 0):
            stuck += 1
            longest = max(longest, fields.get("lastsnd", 0))
        m = RWND.search(line)
        if m:
            rwnd = m.group(1)
    print(f"{name}: {figures['bw_bytes'] / 2**20:.1f} MiB/s; target socket rwnd_limited "
          f"{rwnd}%; window below one segment with data waiting in {stuck} of "
          f"{len(samples)} samples, longest silence then {longest} ms", flush=True)
    moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    wanted = ("Window", "Probe", "DelayedACK", "Prune", "Collapse", "Backlog")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(moved.items())
                          if any(w in k for w in wanted)), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", default=os.path.join(bench.REPO, "scst.ko"))
    parser.add_argument("--mtu", type=int, help="the loopback's MTU (default: as booted)")
    parser.add_argument("--rmem-max", type=int,
                        help="net.core.rmem_max before login, which caps the receive buffer "
                             "iscsid asks for (node.conn[0].tcp.window_size)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sh("ip", "link", "set", "lo", "up")
    if args.rmem_max:
        sh("sysctl", "-w", f"net.core.rmem_max={args.rmem_max}")
    if args.mtu:
        sh("ip", "link", "set", "lo", "mtu", str(args.mtu))
    tmpfs = "/run/scst-probe"
    os.makedirs(tmpfs, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "size=300m", "probe", tmpfs)
    backing = os.path.join(tmpfs, "lun.img")
    sh("dd", "if=/dev/zero", f"of={backing}", "bs=1M", "count=256")
    sh("insmod", args.module)
    with contextlib.ExitStack() as stack:
        stack.callback(sh, "rmmod", "scst", check=False)
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device pfile filename={backing}")
        scst_iqn = bench.iqn("scst-rs")
        mgmt("targets/iscsi/mgmt", f"add_target {scst_iqn}")
        mgmt(f"targets/iscsi/{scst_iqn}/luns/mgmt", "add pfile 0")
        mgmt(f"targets/iscsi/{scst_iqn}/enabled", "1")
        mgmt("targets/iscsi/enabled", "1")
        stack.callback(mgmt, "targets/iscsi/enabled", "0")
        cores = stack.enter_context(peers.lio_backstores(backing, name="probe"))
        stack.enter_context(peers.lio_iscsi(cores, bench.PORTS["LIO"], bench.iqn("LIO")))
        stack.enter_context(peers.tgt_luns(backing, port=bench.PORTS["tgt"],
                                           iqn=bench.iqn("tgt")))
        stack.enter_context(bench.iscsid())
        disks = {}
        for target, lun in (("scst-rs", 0), ("LIO", 0), ("tgt", 1)):
            bench.login(bench.iqn(target), bench.PORTS[target])
            disk = bench.session_disks(bench.iqn(target), [lun])[lun]
            bench.no_scheduler(disk)
            disks[target] = disk
        for _ in range(args.rounds):
            for target, disk in disks.items():
                probe(target, disk, bench.PORTS[target])


if __name__ == "__main__":
    main()

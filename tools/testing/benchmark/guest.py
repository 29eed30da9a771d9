#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The benchmark's guest side (run by tools/testing/bench through guest-run).

Sets up, all at once and on their own ports, scst-rs, LIO and tgt serving
the same backings (no storage, a file on tmpfs, and each its own slow
null_blk device), the ceiling
responder, scst_local and tcm_loop, and the SRP targets (scst-rs' srpt and
LIO's ib_srpt, soft RoCE on the guest's NIC); logs the kernel's initiators
in to every iSCSI and SRP target once; then runs each workload on each target in turn, round
after round (A B C D A B C D ...), so that the machine's drift hits every
target alike. Every run is appended to OUT/raw.json as it ends.
"""

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "testing", "guest"))

import peers  # noqa: E402
from conftest import (ROOT, guest_nic, mgmt, nic_ipv4, node_guid, port_gids,  # noqa: E402
                      sh, soft_rdma, srp_add_target, srp_hosts, srp_logout, write)
SIZE = 256 << 20
BASE_IQN = "iqn.2026-11.org.scst-rs:bench"
PORTS = {"scst-rs": 3260, "LIO": 3262, "tgt": 3263, "ceiling": 3264}
BACKINGS = ["null", "file"]
# A slow device: null_blk completing every I/O 2 ms after submission (a
# timer interrupt), one per target (blockio, LIO's iblock, tgt's rdwr),
# measured through the kernel's initiators only, at QD1 and QD32.
SLOW = "slow"
SLOW_NSEC = 2_000_000
SLOW_DEVICES = {"scst-rs": "/dev/nullb0", "LIO": "/dev/nullb1", "tgt": "/dev/nullb2"}
SLOW_WORKLOADS = ["randread-512-qd1", "randread-4k-qd32", "randwrite-4k-qd32"]
# The LUN of each backing on each iSCSI target (scst-rs' LUN 2 is the
# scst_user handler's; tgt's LUN 0 is its controller).
LUNS = {
    "scst-rs": {"null": 0, "file": 1, SLOW: 3},
    "LIO": {"null": 0, "file": 1, SLOW: 2},
    "tgt": {"null": 1, "file": 2, SLOW: 3},
    "ceiling": {"none": 0},
}

# libiscsi's iscsi-perf (user-space initiator; reads only): its options.
ISCSI_PERF = {
    "randread-4k-qd32": ["-r", "-b", "8", "-m", "32"],
    "randread-512-qd1": ["-r", "-b", "1", "-m", "1"],
    "read-1m-qd8": ["-b", "2048", "-m", "8"],
}
# fio through a kernel initiator (open-iscsi, or a local SCSI host).
FIO = {
    "randread-4k-qd32": ["--rw=randread", "--bs=4k", "--iodepth=32"],
    "randwrite-4k-qd32": ["--rw=randwrite", "--bs=4k", "--iodepth=32"],
    "randread-512-qd1": ["--rw=randread", "--bs=512", "--iodepth=1"],
    "read-1m-qd8": ["--rw=read", "--bs=1m", "--iodepth=8"],
    "write-1m-qd8": ["--rw=write", "--bs=1m", "--iodepth=8"],
}


def log(text):
    print(f"bench: {text}", flush=True)


def iqn(target):
    return f"{BASE_IQN}-{target.lower().replace('-', '')}"


# --- the targets ---------------------------------------------------------

USER_FILEIO = os.path.join(REPO, "tools", "scst_user", "target", "release", "scst-user-fileio")


@contextlib.contextmanager
def scst_rs(module, null_size, backing):
    """scst.ko: nullio as LUN 0 and fileio as LUN 1, over iSCSI (port 3260)
    and through a scst_local session; LUN 2 of both is the same file served
    by the scst_user file handler, LUN 3 blockio on the slow device. Yields
    (URLs of LUNs 0 and 1, local SCSI host)."""
    sh("insmod", module)
    user = None
    try:
        mgmt("handlers/vdisk_nullio/mgmt", f"add_device bnull size={null_size}")
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device bfile filename={backing}")
        mgmt("handlers/vdisk_blockio/mgmt",
             f"add_device bslow filename={SLOW_DEVICES['scst-rs']}")
        user = subprocess.Popen([USER_FILEIO, "-t", "4", "buser", backing],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(f"{ROOT}/devices/buser") or user.poll() is not None:
                break
            time.sleep(0.1)
        assert os.path.exists(f"{ROOT}/devices/buser"), "the scst_user handler did not register"
        name = iqn("scst-rs")
        mgmt("targets/iscsi/mgmt", f"add_target {name}")
        mgmt(f"targets/iscsi/{name}/luns/mgmt", "add bnull 0")
        mgmt(f"targets/iscsi/{name}/luns/mgmt", "add bfile 1")
        mgmt(f"targets/iscsi/{name}/luns/mgmt", "add buser 2")
        mgmt(f"targets/iscsi/{name}/luns/mgmt", "add bslow 3")
        mgmt(f"targets/iscsi/{name}/enabled", "1")
        mgmt("targets/iscsi/enabled", "1")
        mgmt("targets/scst_local/mgmt", "add_target bench")
        mgmt("targets/scst_local/bench/luns/mgmt", "add bnull 0")
        mgmt("targets/scst_local/bench/luns/mgmt", "add bfile 1")
        mgmt("targets/scst_local/bench/luns/mgmt", "add buser 2")
        mgmt("targets/scst_local/bench/luns/mgmt", "add bslow 3")
        mgmt("targets/scst_local/mgmt", "add_session bench bench_initiator")
        host = os.path.basename(os.path.realpath(
            f"{ROOT}/targets/scst_local/bench/sessions/bench_initiator/host"))
        yield [f"iscsi://127.0.0.1:{PORTS['scst-rs']}/{name}/{lun}" for lun in (0, 1)], host
    finally:
        sh("udevadm", "settle", check=False)
        # Best effort: rmmod below removes whatever is left.
        write("targets/iscsi/enabled", "0")
        write("targets/scst_local/mgmt", "del_target bench")
        if user is not None:
            # Its open /dev/scst_user holds the module.
            user.kill()
            user.wait(timeout=60)
        sh("rmmod", "scst", check=False)


@contextlib.contextmanager
def ceiling():
    binary = os.path.join(HERE, "responder", "target", "release", "iscsi-ceiling")
    name = iqn("ceiling")
    proc = subprocess.Popen([binary, f"127.0.0.1:{PORTS['ceiling']}", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert proc.poll() is None, "the ceiling responder did not start"
        yield [f"iscsi://127.0.0.1:{PORTS['ceiling']}/{name}/0"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def iscsid():
    sh("modprobe", "iscsi_tcp")
    os.makedirs("/run/lock/iscsi", exist_ok=True)
    daemon = subprocess.Popen(["iscsid", "-f"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(1)
    try:
        yield
    finally:
        sh("timeout", "120", "iscsiadm", "-m", "node", "--logout", check=False)
        sh("timeout", "60", "iscsiadm", "-m", "node", "-o", "delete", check=False)
        daemon.terminate()
        daemon.wait(timeout=30)


def login(target_iqn, port):
    portal = f"127.0.0.1:{port}"
    sh("timeout", "120", "iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portal)
    sh("timeout", "120", "iscsiadm", "-m", "node", "-T", target_iqn, "-p", portal, "--login")


def session_disks(target_iqn, luns):
    """{LUN: /dev/sdX} of the kernel initiator's session with `target_iqn`,
    once all of `luns` have appeared (the scan adds them one by one)."""
    for _ in range(300):
        for session in glob.glob("/sys/class/iscsi_session/session*"):
            with open(f"{session}/targetname") as f:
                if f.read().strip() != target_iqn:
                    continue
            disks = {}
            for block in glob.glob(f"{session}/device/target*/*:*:*:*/block/*"):
                lun = int(block.split("/")[-3].split(":")[-1])
                disks[lun] = "/dev/" + os.path.basename(block)
            if all(lun in disks for lun in luns):
                return disks
        time.sleep(0.1)
    raise AssertionError(f"LUNs {luns} of {target_iqn} did not appear after login")


def host_disks(host, luns):
    """{LUN: /dev/sdX} of a local SCSI host, waiting for `luns` to appear."""
    for _ in range(300):
        disks = {}
        for block in glob.glob(f"/sys/class/scsi_host/{host}/device/target*/*:*:*:*/block/*"):
            disks[int(block.split("/")[-3].split(":")[-1])] = "/dev/" + os.path.basename(block)
        if all(lun in disks for lun in luns):
            return disks
        time.sleep(0.1)
    raise AssertionError(f"{host}: LUNs {luns} did not appear")


def srp(stack, srpt_module, cores):
    """scst-rs' srpt (its bnull and bfile devices) and LIO's ib_srpt (the
    first two `cores`: the same backings) as LUNs 0 and 1 on soft RoCE, and
    ib_srp logged in to both: {(target, backing): /dev/sdX}; none without
    a NIC (guest-run -n)."""
    if not guest_nic():
        log("no NIC: no SRP runs")
        return {}
    ibdev = stack.enter_context(soft_rdma("rxe"))
    ip = nic_ipv4(guest_nic())
    sh("modprobe", "-a", "ib_srp", "rdma_cm")
    sh("insmod", srpt_module, "rdma_cm_port=5000")
    stack.callback(sh, "rmmod", "scst_srpt", check=False)
    gid = port_gids(ibdev)[0]
    for lun, name in enumerate(["bnull", "bfile"]):
        mgmt(f"targets/ib_srpt/{gid}/luns/mgmt", f"add {name} {lun}")
    stack.enter_context(peers.lio_srpt(cores[:2], ibdev, ip))
    stack.callback(srp_logout)
    guid = node_guid(ibdev)
    endpoints = {}
    # ib_srp takes one login per (id_ext, ioc_guid, initiator_ext): the
    # two targets share the first two.
    for ext, (target, port) in enumerate([("scst-rs", 5000), ("LIO", peers.LIO_SRPT_PORT)]):
        before = srp_hosts()
        err = srp_add_target(ibdev, f"id_ext={guid},ioc_guid={guid},initiator_ext={ext + 1},"
                                    f"dest={ip}:{port},src={ip}")
        if err:
            raise RuntimeError(f"ib_srp's login to {target} failed: errno {err}")
        host = (srp_hosts() - before).pop()
        disks = host_disks(host, [0, 1])
        for lun, backing in enumerate(BACKINGS):
            endpoints[(target, backing)] = disks[lun]
    return endpoints


def no_scheduler(disk):
    """Every disk gets the same block layer: no I/O scheduler."""
    with contextlib.suppress(OSError), \
            open(f"/sys/block/{os.path.basename(disk)}/queue/scheduler", "w") as f:
        f.write("none")


# --- measuring -----------------------------------------------------------

def cpu_counters():
    """(context switches, busy jiffies, all jiffies) of the whole guest."""
    ctxt = busy = total = 0
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == "ctxt":
                ctxt = int(fields[1])
            elif fields[0] == "cpu":
                values = [int(v) for v in fields[1:]]
                total = sum(values)
                busy = total - values[3] - values[4]  # idle, iowait
    return ctxt, busy, total


def measured(run):
    """Runs `run()` (which returns a dict with `ios`) and adds context
    switches and busy CPU time per I/O, guest wide (initiator and target)."""
    c0, b0, t0 = cpu_counters()
    start = time.monotonic()
    figures = run()
    elapsed = time.monotonic() - start
    c1, b1, t1 = cpu_counters()
    ios = figures.get("ios") or 0
    if ios:
        hz = os.sysconf("SC_CLK_TCK")
        figures["ctxt_per_io"] = (c1 - c0) / ios
        figures["cpu_us_per_io"] = (b1 - b0) / hz * 1e6 / ios
    figures["wall_s"] = elapsed
    return figures


PERF_AVERAGE = re.compile(r"iops average (\d+)")


def parse_iscsi_perf(output, block_bytes):
    matches = PERF_AVERAGE.findall(output)
    if not matches:
        raise RuntimeError(f"iscsi-perf printed no average: {output[-500:]!r}")
    iops = int(matches[-1])
    return iops, iops * block_bytes


def run_iscsi_perf(url, workload, seconds):
    args = ISCSI_PERF[workload]
    blocks = int(args[args.index("-b") + 1])

    def run():
        out = sh("timeout", str(seconds + 60), "iscsi-perf", "-t", str(seconds),
                 *args, url).stdout
        iops, bw = parse_iscsi_perf(out, blocks * 512)
        figures = {"iops": iops, "bw_bytes": bw, "ios": iops * seconds}
        if args[args.index("-m") + 1] == "1":
            figures["lat_mean_us"] = 1e6 / iops if iops else None
        return figures
    return measured(run)


def run_fio(disk, workload, seconds):
    def run():
        out = sh("timeout", str(seconds + 120), "fio", "--name=bench", f"--filename={disk}",
                 "--ioengine=libaio", "--direct=1", "--time_based", f"--runtime={seconds}",
                 "--ramp_time=1", "--norandommap", "--randrepeat=0", "--lat_percentiles=1",
                 "--output-format=json", *FIO[workload]).stdout
        job = json.loads(out[out.index("{"):])["jobs"][0]
        side = job["write"] if "write" in workload else job["read"]
        lat = side["lat_ns"]
        return {
            "iops": side["iops"],
            "bw_bytes": side["bw_bytes"],
            "lat_mean_us": lat["mean"] / 1e3,
            "lat_p99_us": lat.get("percentile", {}).get("99.000000", 0) / 1e3,
            "ios": side["total_ios"],
            "errors": job.get("error", 0),
        }
    return measured(run)


# --- the plan ------------------------------------------------------------

def plan(endpoints, only=None):
    """Every (tool, workload, backing, target, endpoint) of one round, the
    targets of one workload and backing back to back."""
    steps = []
    for tool, workloads, targets in [
        ("iscsi-perf", ISCSI_PERF, ["scst-rs", "LIO", "tgt", "ceiling"]),
        ("fio-iscsi", FIO, ["scst-rs", "LIO", "tgt", "ceiling"]),
        ("fio-local", FIO, ["scst_local", "tcm_loop"]),
        ("fio-user", FIO, ["scst_user", "vdisk_fileio"]),
        ("fio-user-iscsi", FIO, ["scst_user", "vdisk_fileio"]),
        ("fio-srp", FIO, ["scst-rs", "LIO"]),
    ]:
        for workload in workloads:
            for backing in BACKINGS + [SLOW]:
                if backing == SLOW and workload not in SLOW_WORKLOADS:
                    continue
                for target in targets:
                    # The ceiling has no backing: it runs once, in the null slot.
                    if target == "ceiling" and backing != "null":
                        continue
                    key = (tool, target, "none" if target == "ceiling" else backing)
                    if key not in endpoints:
                        continue
                    if only and not re.search(only, f"{tool}/{workload}/{backing}/{target}"):
                        continue
                    steps.append((tool, workload, key[2], target, endpoints[key]))
    return steps


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # kvm-clock is offered only under KVM; a TCG guest has none.
    accel = "KVM" if _kvm_clock() else "TCG"
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_kib": int(open("/proc/meminfo").readline().split()[1]),
        "accel": accel,
        "tools": {
            "fio": sh("fio", "--version", check=False).stdout.strip(),
            "tgtd": "Debian " + _dpkg_version("tgt"),
            "libiscsi": "Debian " + _dpkg_version("libiscsi-bin"),
            "open-iscsi": "Debian " + _dpkg_version("open-iscsi"),
        },
    }


def _kvm_clock():
    with contextlib.suppress(OSError):
        with open("/sys/devices/system/clocksource/clocksource0/available_clocksource") as f:
            return "kvm-clock" in f.read()
    return False


def _dpkg_version(package):
    return sh("dpkg-query", "-W", "-f=${Version}", package, check=False).stdout.strip() or "?"


def profile(out_dir, prefix, run):
    """perf's view of the guest while `run()` runs (not one of the measured
    runs): where the time goes. Writes PREFIXsymbols.txt and PREFIXcomm.txt
    and returns what `run()` measured."""
    perf = shutil.which("perf")
    if not perf:
        log("perf is not installed: no profile")
        return None
    data = os.path.join(out_dir, "perf.data")
    proc = subprocess.Popen([perf, "record", "-a", "-g", "-F", "499", "-o", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    figures = run()
    proc.send_signal(2)
    proc.wait(timeout=120)
    # scst.ko is not where perf looks for modules: its samples stay
    # addresses, each listed (resolve them with nm on the module).
    for name, args in [("symbols.txt", ["--no-children", "--sort", "symbol",
                                         "--percent-limit", "0.1"]),
                       ("comm.txt", ["--no-children", "--sort", "comm,dso"]),
                       ("dso.txt", ["--no-children", "--sort", "dso",
                                    "--percent-limit", "0.01"]),
                       # Which thread spends it where (a completion
                       # queue's work against the rest).
                       ("comm-symbols.txt", ["--no-children", "--sort", "comm,dso,symbol",
                                             "--percent-limit", "0.02"]),
                       ("scst.txt", ["--no-children", "--dsos", "[scst]", "--sort", "symbol",
                                     "--percent-limit", "0.01"])]:
        report = sh("timeout", "600", perf, "report", "-i", data, "--stdio", "-g", "none",
                    "--percent-limit", "0.5", *args, check=False).stdout
        with open(os.path.join(out_dir, prefix + name), "w") as f:
            f.write(report)
    os.unlink(data)
    return figures


def profiles(out_dir, endpoints, seconds):
    """scst-rs serving 4 KiB random reads at QD32 (iscsi-perf), 1 MiB
    sequential reads of the file through the kernel's initiator from
    scst-rs and from tgt side by side (the workload where tgt is ahead),
    and 4 KiB random reads through ib_srp from scst-rs and LIO."""
    url = endpoints[("iscsi-perf", "scst-rs", "null")]
    profile(out_dir, "perf-", lambda: run_iscsi_perf(url, "randread-4k-qd32", seconds))
    # Through kernel initiators: 1 MiB sequential reads of the file from
    # scst-rs and tgt side by side (the workload where tgt is ahead), and
    # 4 KiB random reads of the null backings through ib_srp from scst-rs'
    # srpt and LIO's ib_srpt.
    runs = [("fio-iscsi", target, "file", "read-1m-qd8", f"perf-read-1m-{target}-")
            for target in ("scst-rs", "tgt")]
    runs += [("fio-srp", target, "null", "randread-4k-qd32", f"perf-srp-randread-4k-{target}-")
             for target in ("scst-rs", "LIO")]
    for tool, target, backing, workload, prefix in runs:
        disk = endpoints.get((tool, target, backing))
        if not disk:
            continue
        figures = profile(out_dir, prefix, lambda: run_fio(disk, workload, seconds))
        if figures:
            log(f"profiled {tool} {workload} {target}: {figures['iops']:.0f} IOPS "
                f"({figures['bw_bytes'] / 2**20:.0f} MiB/s), "
                f"{figures.get('cpu_us_per_io', 0):.0f} CPU us per I/O")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--module", default=os.path.join(REPO, "scst.ko"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time", type=int, default=5, help="seconds per run")
    parser.add_argument("--only", help="regex over tool/workload/backing/target")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sh("ip", "link", "set", "lo", "up")

    tmpfs = "/run/scst-bench"
    os.makedirs(tmpfs, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", f"size={SIZE + (64 << 20)}", "bench", tmpfs)
    backing = os.path.join(tmpfs, "lun.img")
    # Real pages, so that reads come from the page cache, not from holes.
    sh("dd", "if=/dev/zero", f"of={backing}", "bs=1M", f"count={SIZE >> 20}")
    sh("modprobe", "null_blk", f"nr_devices={len(SLOW_DEVICES)}", "irqmode=2",
       f"completion_nsec={SLOW_NSEC}", "gb=1", "hw_queue_depth=128")

    record = {"machine": machine(), "rounds": args.rounds, "seconds": args.time,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": []}
    raw = os.path.join(args.out, "raw.json")
    with contextlib.ExitStack() as stack:
        scst_urls, scst_host = stack.enter_context(scst_rs(args.module, SIZE, backing))
        cores = stack.enter_context(peers.lio_backstores(peers.NULL, backing,
                                                         SLOW_DEVICES["LIO"], name="bench"))
        lio_urls = stack.enter_context(peers.lio_iscsi(cores, PORTS["LIO"], iqn("LIO")))
        loop_host = stack.enter_context(peers.tcm_loop(cores))
        tgt_urls = stack.enter_context(peers.tgt_luns(peers.NULL, backing, SLOW_DEVICES["tgt"],
                                                      port=PORTS["tgt"], iqn=iqn("tgt")))
        ceiling_urls = stack.enter_context(ceiling())
        stack.enter_context(iscsid())
        srpt_module = os.path.join(os.path.dirname(args.module), "scst_srpt.ko")
        srp_disks = srp(stack, srpt_module, cores)

        endpoints = {}
        for target, urls in [("scst-rs", scst_urls), ("LIO", lio_urls), ("tgt", tgt_urls)]:
            for b, url in zip(BACKINGS, urls):
                endpoints[("iscsi-perf", target, b)] = url
        endpoints[("iscsi-perf", "ceiling", "none")] = ceiling_urls[0]
        for target, luns in LUNS.items():
            login(iqn(target), PORTS[target])
            disks = session_disks(iqn(target), list(luns.values()))
            for b, lun in luns.items():
                endpoints[("fio-iscsi", target, b)] = disks[lun]
        # scst_local has the iSCSI target's LUNs, tcm_loop LIO's.
        for target, host, luns in [("scst_local", scst_host, LUNS["scst-rs"]),
                                   ("tcm_loop", loop_host, LUNS["LIO"])]:
            disks = host_disks(host, list(luns.values()))
            for b, lun in luns.items():
                endpoints[("fio-local", target, b)] = disks[lun]
        # The same file through the user-space handler and through vdisk_fileio.
        disks = host_disks(scst_host, [1, 2])
        endpoints[("fio-user", "scst_user", "file")] = disks[2]
        endpoints[("fio-user", "vdisk_fileio", "file")] = disks[1]
        # And through iSCSI, where iSCSI moves the data in the handler's
        # own buffers.
        disks = session_disks(iqn("scst-rs"), [1, 2])
        endpoints[("fio-user-iscsi", "scst_user", "file")] = disks[2]
        endpoints[("fio-user-iscsi", "vdisk_fileio", "file")] = disks[1]
        for (target, b), disk in srp_disks.items():
            endpoints[("fio-srp", target, b)] = disk
        for key, endpoint in sorted(endpoints.items()):
            if endpoint.startswith("/dev/"):
                no_scheduler(endpoint)
            log(f"{'/'.join(key)}: {endpoint}")
        record["endpoints"] = {"/".join(k): v for k, v in endpoints.items()}

        steps = plan(endpoints, args.only)
        log(f"{len(steps)} runs per round, {args.rounds} rounds of {args.time} s runs")
        for round_no in range(args.rounds):
            for tool, workload, b, target, endpoint in steps:
                try:
                    if tool == "iscsi-perf":
                        figures = run_iscsi_perf(endpoint, workload, args.time)
                    else:
                        figures = run_fio(endpoint, workload, args.time)
                except (subprocess.SubprocessError, RuntimeError, ValueError, KeyError) as e:
                    figures = {"error": str(e)[-300:]}
                run = {"round": round_no, "tool": tool, "workload": workload,
                       "backing": b, "target": target, **figures}
                record["runs"].append(run)
                log(f"round {round_no} {tool} {workload} {b} {target}: "
                    f"{figures.get('iops', 'ERROR')} IOPS" +
                    (f" {figures['error']}" if "error" in figures else ""))
                with open(raw + ".tmp", "w") as f:
                    json.dump(record, f, indent=1)
                os.replace(raw + ".tmp", raw)
        if args.profile:
            profiles(args.out, endpoints, max(args.time, 5))
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(raw, "w") as f:
        json.dump(record, f, indent=1)
    sh("umount", tmpfs, check=False)
    sh("rmmod", "null_blk", check=False)
    failed = [r for r in record["runs"] if "error" in r]
    log(f"{len(record['runs'])} runs, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

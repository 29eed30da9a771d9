# SPDX-License-Identifier: GPL-2.0
"""libiscsi's conformance suites against scst-rs, LIO and tgt in the same
guest run, the per-test tables side by side. The bar: scst-rs fails no test
that both peers pass, and passes the whole iSCSI family.

scst-rs runs every suite (test_iscsi.py's table). The peers run a slice of
the SCSI suites and the iSCSI family in every run; with
PEERS_CONFORMANCE=1 (tools/testing/peers-conformance) every suite."""

import os
import time

from conftest import (KNOWN_ISCSI_FAILURES, SCRATCH, backing_file, libiscsi_table, mgmt, read,
                      read_libiscsi_table, sh, side_by_side)
from peers import lio_target, tgt_target

IQN = "iqn.2026-11.org.scst-rs:t1"
PORTAL = "iscsi://127.0.0.1"
BACKING_SIZE = 256 << 20
FULL = os.environ.get("PEERS_CONFORMANCE") == "1"
# The peers' slice: data both ways, sense, the commands clusters and
# VAAI lean on, and task attributes.
PEER_SLICE = ("TestUnitReady Inquiry ModeSense6 ReadCapacity16 Read10 Read16 Write10 "
              "Write16 WriteSame16 Unmap CompareAndWrite Verify16 GetLBAStatus")


def conformance(url, name, full=True):
    """Runs the suites (or the slice) against `url`; returns {test: verdict}."""
    return libiscsi_table(url, f"iscsi-test-cu-{name}.txt", "iSCSI",
                          suites=None if full else PEER_SLICE)


def fresh(path):
    """Whether `path` was written since this guest booted."""
    with open("/proc/uptime") as f:
        booted = time.time() - float(f.read().split()[0])
    return os.path.exists(path) and os.path.getmtime(path) > booted


def scst_rs_conformance():
    """scst-rs' table: test_iscsi.py's from this run, or a run of its own."""
    table = os.path.join(SCRATCH, "iscsi-test-cu-iscsi.txt")
    if fresh(table):
        return read_libiscsi_table(table)
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("iscsi", BACKING_SIZE)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}; thin_provisioned=1")
    mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
    mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add disk1 0")
    mgmt(f"targets/iscsi/{IQN}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")
    try:
        return conformance(f"{PORTAL}/{IQN}/0", "iscsi")
    finally:
        mgmt("targets/iscsi/enabled", "0")
        mgmt("targets/iscsi/mgmt", f"del_target {IQN}")
        mgmt("handlers/vdisk_fileio/mgmt", "del_device disk1")


def test_conformance_beside_lio_and_tgt(scst):
    ours = scst_rs_conformance()
    # The peers on their own ports; scst-rs' portals are off meanwhile.
    with lio_target(backing_file("peer-lio", BACKING_SIZE)) as url:
        lio = conformance(url, "lio", FULL)
    with tgt_target(backing_file("peer-tgt", BACKING_SIZE)) as url:
        tgt = conformance(url, "tgt", FULL)
    side_by_side("iscsi-test-cu-peers.md",
                 "iscsi-test-cu --dataloss: scst-rs, LIO and tgt in one guest run",
                 f"kernel {os.uname().release}; each suite under a 300 s timeout",
                 {"scst-rs": ours, "LIO": lio, "tgt": tgt})
    least = 100 if FULL else 40
    assert len(lio) > least and len(tgt) > least, "a peer's run was cut short"
    both_pass = {n for n in lio if lio[n] == "passed" and tgt.get(n) == "passed"}
    behind = sorted(n for n in both_pass if ours.get(n) != "passed")
    assert not behind, f"scst-rs fails what LIO and tgt both pass: {behind}"
    iscsi = {n for n in ours if n.startswith("iSCSI.")}
    assert len(iscsi) >= 10, "iSCSI suite missing"
    failing = sorted(n for n in iscsi if ours[n] != "passed" and n not in KNOWN_ISCSI_FAILURES)
    assert not failing, f"iSCSI-family failures: {failing}"
    assert read("targets/iscsi/enabled").strip() == "0"

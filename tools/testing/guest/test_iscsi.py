# SPDX-License-Identifier: GPL-2.0
"""The in-kernel iSCSI target over loopback, driven by libiscsi's tools and
conformance suite."""

import os
import subprocess

import pytest

from conftest import ROOT, backing_file, mgmt, read, sh, write

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCRATCH = os.environ.get("SCST_SCRATCH", "/tmp")
IQN = "iqn.2026-11.org.scst-rs:t1"
PORTAL = "iscsi://127.0.0.1"


@pytest.fixture
def target(scst):
    """A fileio LUN 0 on an enabled iSCSI target, portals on."""
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("iscsi", 256 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}; thin_provisioned=1")
    mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
    assert read(f"targets/iscsi/{IQN}/enabled").strip() == "0", "a new target starts disabled"
    mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add disk1 0")
    mgmt(f"targets/iscsi/{IQN}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")
    yield f"{PORTAL}/{IQN}/0"
    mgmt("targets/iscsi/enabled", "0")


def test_enable_and_bad_values(scst):
    assert read("targets/iscsi/enabled").strip() == "0"
    for bad in ["2", "yes", "-1"]:
        assert write("targets/iscsi/enabled", bad) == 22, bad
    mgmt("targets/iscsi/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")
    assert read("targets/iscsi/enabled").strip() == "1"
    mgmt("targets/iscsi/enabled", "0")
    assert write("targets/iscsi/mgmt", "add_target") == 22
    assert write("targets/iscsi/mgmt", "frobnicate x") == 22


def test_discovery_and_commands(target):
    out = sh("timeout", "30", "iscsi-ls", "-s", PORTAL).stdout
    assert IQN in out and "127.0.0.1:3260" in out, out
    inq = sh("timeout", "30", "iscsi-inq", target).stdout
    assert "SCST" in inq or "disk1" in inq, inq
    cap = sh("timeout", "30", "iscsi-readcapacity16", target).stdout
    assert "Logical Block Length:512" in cap.replace(" ", "") or "512" in cap, cap
    # A disabled target refuses logins (target error: service unavailable).
    mgmt(f"targets/iscsi/{IQN}/enabled", "0")
    r = sh("timeout", "30", "iscsi-inq", target, check=False)
    assert r.returncode != 0
    mgmt(f"targets/iscsi/{IQN}/enabled", "1")
    # A target that does not exist: login fails, nothing hangs.
    r = sh("timeout", "30", "iscsi-inq", f"{PORTAL}/iqn.2026-11.org.scst-rs:none/0", check=False)
    assert r.returncode != 0
    sessions = os.path.join(ROOT, "targets/iscsi", IQN, "sessions")
    assert os.listdir(sessions) == [], "sessions left after the initiators logged out"


# iSCSI-family tests that fail for now, each with the reason (every SCSI
# suite must pass).
KNOWN_ISCSI_FAILURES = {
    **{f"iSCSI.{t}Residuals": "residual overflow needs the CDB's transfer length in the core"
       for t in ["Read10", "Read12", "Read16", "Write10", "Write12", "Write16",
                 "WriteVerify10", "WriteVerify12", "WriteVerify16"]},
    "iSCSI.Read10Invalid": "EDTL/direction mismatches are not checked against the CDB yet",
    "iSCSI.iSCSIDataSnInvalid": "Data-Out DataSN is not checked yet",
    "iSCSI.AbortTaskSimpleAsync": "commands run inline in the receive loop: no task to abort",
}


def test_iscsi_test_cu(target):
    """libiscsi's SCSI suites over the iSCSI target; table kept in the results."""
    table = os.path.join(SCRATCH, "iscsi-test-cu-iscsi.txt")
    r = subprocess.run([os.path.join(REPO, "tools/testing/iscsi-test-cu-local"), target, table,
                        "iSCSI"],
                       capture_output=True, text=True, timeout=3000)
    print(r.stdout)
    results = [line.split() for line in open(table) if line.strip()]
    assert len(results) > 100, "too few tests ran"
    assert sum(1 for name, _ in results if name.startswith("iSCSI.")) >= 10, "iSCSI suite missing"
    failed = {name for name, verdict in results if verdict != "passed"}
    unexpected = failed - set(KNOWN_ISCSI_FAILURES)
    assert not unexpected, f"iscsi-test-cu failures: {sorted(unexpected)}"

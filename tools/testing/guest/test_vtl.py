# SPDX-License-Identifier: GPL-2.0
"""The virtual tape library (tools/scst_user's scst-user-vtl): its media
changer and two drives through iSCSI, driven by mtx on the changer's sg
node and by tar and mt on the drives' st, the kernel initiator's."""

import glob
import os
import re
import time

from conftest import (ROOT, VTL, iscsi_export, mgmt, mt, open_iscsi_login, sh, sums_of,
                      tree)


def node(scsi_devices, lun, kind):
    """/dev/<node> of the session's LUN `lun`: its sg node (kind
    "scsi_generic") or its no-rewind st node ("scsi_tape")."""
    for _ in range(200):
        for d in scsi_devices():
            if not d.endswith(f":{lun}"):
                continue
            found = [os.path.basename(p) for p in glob.glob(f"{d}/{kind}/*")]
            if kind == "scsi_tape":
                found = [n for n in found if re.fullmatch(r"nst\d+", n)]
            if found and os.path.exists("/dev/" + found[0]):
                return "/dev/" + found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {kind} node for LUN {lun}")


def mtx(sg, *args):
    r = sh("timeout", "300", "mtx", "-f", sg, *args, check=False)
    assert r.returncode == 0, f"mtx {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


def slot(status, n):
    m = re.search(rf"^\s*Storage Element {n}:(Full|Empty)\s*(:VolumeTag=(\S+))?", status, re.M)
    assert m, status
    return m.group(3) if m.group(1) == "Full" else None


def drive(status, n):
    m = re.search(rf"^Data Transfer Element {n}:(Full|Empty)(.*VolumeTag\s*=\s*(\S+))?",
                  status, re.M)
    assert m, status
    return m.group(3) if m.group(1) == "Full" else None


def test_library_through_iscsi(handlers):
    sh("modprobe", "st")
    carts = "/tmp/vtl-carts"
    handlers("vtl", carts, "--drives", "2", "--slots", "6", "--capacity", "64M", binary=VTL)
    for d in ("vtl_drive0", "vtl_drive1"):
        for _ in range(100):
            if os.path.exists(os.path.join(ROOT, "devices", d)):
                break
            time.sleep(0.1)
    iqn = "iqn.2026-12.org.scst-rs:vtl"
    with iscsi_export(iqn, "vtl"):
        mgmt(f"targets/iscsi/{iqn}/luns/mgmt", "add vtl_drive0 1")
        mgmt(f"targets/iscsi/{iqn}/luns/mgmt", "add vtl_drive1 2")
        with open_iscsi_login(iqn) as scsi_devices:
            changer = node(scsi_devices, 0, "scsi_generic")
            drives = [node(scsi_devices, 1, "scsi_tape"), node(scsi_devices, 2, "scsi_tape")]
            sh("udevadm", "settle", check=False)
            status = mtx(changer, "status")
            assert "2 Drives, 7 Slots ( 1 Import/Export )" in status, status
            assert [slot(status, n) for n in range(1, 7)] == \
                ["VT0000L5", "VT0001L5", "VT0002L5", "VT0003L5", None, None], status
            assert drive(status, 0) is None and drive(status, 1) is None

            # Two cartridges written in drive 0, one after the other.
            a = tree("/tmp/vtl-a", 5, 4)
            b = tree("/tmp/vtl-b", 6, 3)
            mtx(changer, "load", "1", "0")
            assert drive(mtx(changer, "status"), 0) == "VT0000L5"
            sh("tar", "-cf", drives[0], "-C", "/tmp/vtl-a", ".")
            mtx(changer, "unload", "1", "0")
            mtx(changer, "load", "2", "0")
            sh("tar", "-cf", drives[0], "-C", "/tmp/vtl-b", ".")
            mtx(changer, "unload", "2", "0")

            # Swapped: the first into drive 1, the second into drive 0.
            mtx(changer, "load", "1", "1")
            mtx(changer, "load", "2", "0")
            status = mtx(changer, "status")
            assert (drive(status, 0), drive(status, 1)) == ("VT0001L5", "VT0000L5"), status
            assert slot(status, 1) is None and slot(status, 2) is None
            for nst, want, out in ((drives[1], a, "/tmp/vtl-oa"), (drives[0], b, "/tmp/vtl-ob")):
                mt(nst, "rewind")
                os.makedirs(out)
                sh("tar", "-xf", nst, "-C", out)
                assert sums_of(out) == want

            # Back to their own slots; a cartridge moved between slots.
            mtx(changer, "unload", "1", "1")
            mtx(changer, "unload", "2", "0")
            mtx(changer, "transfer", "3", "5")
            status = mtx(changer, "status")
            assert [slot(status, n) for n in range(1, 7)] == \
                ["VT0000L5", "VT0001L5", None, "VT0003L5", "VT0002L5", None], status
            # st sees an empty drive as one with its door open; moving from
            # an empty slot is refused.
            assert "DR_OPEN" in mt(drives[0], "status").stdout
            r = sh("mtx", "-f", changer, "load", "6", "0", check=False)
            assert r.returncode != 0
    # The cartridges are the files named by their barcodes.
    assert sorted(os.listdir(carts)) == ["VT0000L5.cart", "VT0001L5.cart"]

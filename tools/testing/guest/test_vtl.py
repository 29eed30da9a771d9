# SPDX-License-Identifier: GPL-2.0
"""The virtual tape library (tools/scst_user's scst-user-vtl): its media
changer and two drives through iSCSI, driven by mtx on the changer's sg
node and by tar and mt on the drives' st, the kernel initiator's."""

import glob
import os
import re
import time

from conftest import (ROOT, VTL, host_of, iscsi_export, mgmt, mt, open_iscsi_login, sh,
                      sums_of, tree)


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


def start_library(handlers, carts):
    """scst-user-vtl with 2 drives and 6 slots, its devices registered."""
    sh("modprobe", "st")
    handlers("vtl", carts, "--drives", "2", "--slots", "6", "--capacity", "64M", binary=VTL)
    for d in ("vtl_drive0", "vtl_drive1"):
        for _ in range(100):
            if os.path.exists(os.path.join(ROOT, "devices", d)):
                break
            time.sleep(0.1)
        assert os.path.exists(os.path.join(ROOT, "devices", d))


def test_library_through_iscsi(handlers):
    carts = "/tmp/vtl-carts"
    start_library(handlers, carts)
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


def test_a_drive_reserved_by_one_initiator(handlers):
    """Initiator 1 (iSCSI) reserves a drive: initiator 2 (a scst_local
    session) gets RESERVATION CONFLICT from it, yet drives the changer,
    and has the drive again once it is released."""
    start_library(handlers, "/tmp/vtl-carts-r")
    iqn = "iqn.2026-12.org.scst-rs:vtl-r"
    with iscsi_export(iqn, "vtl"):
        mgmt(f"targets/iscsi/{iqn}/luns/mgmt", "add vtl_drive0 1")
        mgmt("targets/scst_local/mgmt", "add_target other")
        mgmt("targets/scst_local/other/luns/mgmt", "add vtl 0")
        mgmt("targets/scst_local/other/luns/mgmt", "add vtl_drive0 1")
        mgmt("targets/scst_local/mgmt", "add_session other s2")
        try:
            base = f"/sys/class/scsi_host/{host_of('other', 's2')}/device/target*:0:0"
            local = {}
            for _ in range(100):
                for lun in (0, 1):
                    found = glob.glob(f"{base}/*:0:0:{lun}/scsi_generic/*")
                    if found and os.path.exists("/dev/" + os.path.basename(found[0])):
                        local[lun] = "/dev/" + os.path.basename(found[0])
                if len(local) == 2:
                    break
                time.sleep(0.1)
            assert len(local) == 2, local
            sh("udevadm", "settle", check=False)
            with open_iscsi_login(iqn) as scsi_devices:
                drive1 = node(scsi_devices, 1, "scsi_generic")
                mtx(node(scsi_devices, 0, "scsi_generic"), "load", "1", "0")
                # Power-on and medium-change unit attentions first.
                for sg in (drive1, local[1]):
                    for _ in range(3):
                        sh("sg_turs", sg, check=False)
                sh("sg_raw", drive1, "16", "00", "00", "00", "00", "00")
                r = sh("sg_turs", local[1], check=False)
                assert r.returncode != 0 and "conflict" in (r.stdout + r.stderr).lower(), r
                # The changer is not reserved: initiator 2 still moves
                # media (another cartridge, into the other slot range).
                mtx(local[0], "transfer", "2", "5")
                assert sh("sg_turs", drive1, check=False).returncode == 0
                sh("sg_raw", drive1, "17", "00", "00", "00", "00", "00")
                assert sh("sg_turs", local[1], check=False).returncode == 0
                mtx(local[0], "unload", "1", "0")
        finally:
            mgmt("targets/scst_local/mgmt", "del_target other")

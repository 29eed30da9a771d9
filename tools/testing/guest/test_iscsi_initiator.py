# SPDX-License-Identifier: GPL-2.0
"""The in-kernel iSCSI target through the kernel's own initiator (open-iscsi):
digests, CHAP, fio verify, a file system, logout and unload."""

import glob
import os
import time

import pytest

from conftest import (ROOT, backing_file, device_of, iscsi_daemon, iscsi_export, mgmt,
                      open_iscsi_login, read, sh)

IQN = "iqn.2026-11.org.scst-rs:oi"
PORTAL = "127.0.0.1"


def iscsiadm(*args, check=True):
    return sh("timeout", "120", "iscsiadm", *args, check=check)


def node(*args, check=True):
    return iscsiadm("-m", "node", "-T", IQN, "-p", PORTAL, *args, check=check)


def set_node(key, value):
    node("-o", "update", "-n", key, "-v", value)


def iscsi_disk():
    """The block device of the logged-in session's LUN 0."""
    for _ in range(200):
        for host in glob.glob("/sys/class/iscsi_session/session*/device/target*/*:0:0:0/block/*"):
            return "/dev/" + os.path.basename(host)
        time.sleep(0.1)
    raise AssertionError("no disk appeared after login")


def sessions():
    return os.listdir(os.path.join(ROOT, "targets/iscsi", IQN, "sessions"))


@pytest.fixture
def iscsid(scst):
    with iscsi_daemon():
        path = backing_file("open-iscsi", 256 << 20)
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device oi1 filename={path}")
        mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
        mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add oi1 0")
        mgmt(f"targets/iscsi/{IQN}/enabled", "1")
        mgmt("targets/iscsi/enabled", "1")
        out = iscsiadm("-m", "discovery", "-t", "sendtargets", "-p", PORTAL).stdout
        assert IQN in out, out
        yield
        node("--logout", check=False)
        iscsiadm("-m", "node", "-o", "delete", check=False)
    mgmt("targets/iscsi/enabled", "0")


def test_digests_fio_verify_and_filesystem(iscsid):
    t = f"targets/iscsi/{IQN}"
    mgmt(f"{t}/HeaderDigest", "CRC32C")
    mgmt(f"{t}/DataDigest", "CRC32C")
    # Small segments and bursts: many Data-Out/Data-In PDUs and R2Ts.
    mgmt(f"{t}/MaxRecvDataSegmentLength", "8192")
    mgmt(f"{t}/FirstBurstLength", "16384")
    mgmt(f"{t}/MaxBurstLength", "65536")
    set_node("node.conn[0].iscsi.HeaderDigest", "CRC32C")
    set_node("node.conn[0].iscsi.DataDigest", "CRC32C")
    node("--login")
    dev = iscsi_disk()
    [s] = sessions()
    shown = {f: read(f"{t}/sessions/{s}/{f}").strip()
             for f in ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength", "initiator_address"]}
    assert shown["HeaderDigest"] == "CRC32C" and shown["DataDigest"] == "CRC32C", shown
    assert shown["MaxRecvDataSegmentLength"] == "8192", shown
    assert shown["initiator_address"].startswith("127.0.0.1:"), shown
    r = sh("timeout", "600", "fio", "--name=verify", f"--filename={dev}", "--allow_file_create=0",
           "--rw=randwrite",
           "--bs=4k,64k", "--bsrange=4k-256k", "--size=48M", "--direct=1", "--ioengine=libaio",
           "--iodepth=16", "--verify=crc32c", "--verify_fatal=1", "--do_verify=1",
           "--output-format=terse")
    assert r.returncode == 0
    sh("mkfs.ext4", "-q", "-F", dev)
    mnt = "/tmp/scst-oi-mnt"
    os.makedirs(mnt, exist_ok=True)
    sh("mount", dev, mnt)
    try:
        data = os.urandom(3 << 20)
        with open(f"{mnt}/blob", "wb") as f:
            f.write(data)
        sh("sync")
        sh("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
        with open(f"{mnt}/blob", "rb") as f:
            assert f.read() == data
    finally:
        sh("umount", mnt)
    sh("fsck.ext4", "-f", "-n", dev)
    node("--logout")
    assert sessions() == []


def test_chap_one_way_mutual_and_wrong_secret(iscsid):
    mgmt("targets/iscsi/mgmt", f"add_target_attribute {IQN} IncomingUser oiuser oiuser-secret")
    set_node("node.session.auth.authmethod", "CHAP")
    set_node("node.session.auth.username", "oiuser")
    set_node("node.session.auth.password", "wrong-secret1")
    r = node("--login", check=False)
    assert r.returncode != 0 and sessions() == [], r.stdout + r.stderr
    set_node("node.session.auth.password", "oiuser-secret")
    node("--login")
    iscsi_disk()
    node("--logout")
    mgmt("targets/iscsi/mgmt", f"add_target_attribute {IQN} OutgoingUser oitarget oitarget-secret")
    set_node("node.session.auth.username_in", "oitarget")
    set_node("node.session.auth.password_in", "oitarget-secret")
    node("--login")
    dev = iscsi_disk()
    sh("dd", f"if={dev}", "of=/dev/null", "bs=1M", "count=4", "iflag=direct")
    node("--logout")
    assert sessions() == []


def test_rmmod_after_logout(iscsid):
    node("--login")
    iscsi_disk()
    node("--logout")
    # The fixture's teardown unloads scst.ko: nothing may hold it.
    assert sessions() == []


def test_nullio_reads_zeros(scst):
    """vdisk_nullio has no data to return: a READ over iSCSI (whose buffer
    is the target's own new pages) gets zeros, never what those pages held
    before. Freed memory is filled with a pattern first, so stale pages
    would show."""
    mgmt("handlers/vdisk_nullio/mgmt", "add_device null0 size_mb=32")
    junk = bytearray(b"\xa5") * (256 << 20)
    del junk
    with iscsi_export(IQN + "-null", "null0"), open_iscsi_login(IQN + "-null") as scsi_devices:
        dev = device_of(scsi_devices, "block/sd*")
        assert dev, "no disk from the iSCSI login"
        nonzero = 0
        with open(dev, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                nonzero += len(chunk) - chunk.count(0)
        assert nonzero == 0, f"{nonzero} non-zero bytes read from nullio"

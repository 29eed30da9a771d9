# SPDX-License-Identifier: GPL-2.0
"""The SRP target's place beside the RDMA stack: scst.ko loads without it,
scst_srpt.ko (which links ib_core and rdma_cm) brings targets/ib_srpt up,
and each port of each RDMA device is a target, named by its GID, that
comes and goes with the device (soft RoCE and soft iWARP on the guest's
NIC)."""

import contextlib
import glob
import os
import re
import subprocess
import time

import pytest

from conftest import (NEEDS_ISCSI, ROOT, SG_IO_LIMITED, SKIPS_NEEDING_CONFIG, SRPT_MODULE,
                      backing_file, device_of, dmesg_since, fio_running, iscsi_test_cu,
                      kill_fio, libiscsi_suite, guest_nic, loaded, load, mark_dmesg,
                      Handler,
                      nic_ipv4, node_guid, port_gids, read, sh, soft_rdma, srp_add_target,
                      unload, unload_rdma_stack, write)

DRIVER = os.path.join(ROOT, "targets", "ib_srpt")


def modules():
    with open("/proc/modules") as f:
        return {line.split()[0] for line in f}


@pytest.fixture
def rdma_free():
    """scst.ko loaded on a guest where no RDMA module is."""
    if loaded():
        unload()
    if "scst_srpt" in modules():
        sh("rmmod", "scst_srpt")
    unload_rdma_stack()
    assert "ib_core" not in modules(), "the RDMA stack stays loaded"
    load()
    yield ROOT
    if "scst_srpt" in modules():
        sh("rmmod", "scst_srpt")
    unload()
    unload_rdma_stack()


def test_scst_needs_no_rdma_stack(rdma_free):
    """insmod scst.ko pulls in nothing of RDMA, and ib_srpt is not there
    until scst_srpt.ko is."""
    assert "ib_core" not in modules() and "rdma_cm" not in modules()
    assert not os.path.exists(DRIVER)
    assert set(sh("modinfo", "-F", "depends", SRPT_MODULE).stdout.strip().split(",")) \
        == {"scst", "rdma_cm", "ib_core"}


@pytest.mark.parametrize("kind", ["rxe", "siw"])
def test_a_target_per_rdma_port(rdma_free, kind):
    """Every port of an RDMA device is a target named by its GID; it goes
    with the device, comes back with it, and everything goes with
    scst_srpt.ko; scst.ko cannot go before it."""
    mark = f"scst-test: srpt targets over {kind}"
    mark_dmesg(mark)
    with soft_rdma(kind) as ibdev:
        # insmod resolves no dependency: what scst_srpt.ko links first.
        sh("modprobe", "rdma_cm")
        sh("insmod", SRPT_MODULE, "rdma_cm_port=5000")
        gids = port_gids(ibdev)
        assert gids, f"{ibdev} has no port"
        for gid in gids:
            target = os.path.join(DRIVER, gid)
            assert os.path.isdir(target), (gid, os.listdir(DRIVER))
            assert read(f"targets/ib_srpt/{gid}/enabled").strip() == "1"
            for d in ("luns", "ini_groups", "sessions"):
                assert os.path.isdir(os.path.join(target, d))
            # What an initiator's add_target needs, as SCST shows it.
            guid = node_guid(ibdev)
            assert read(f"targets/ib_srpt/{gid}/login_info").strip() == (
                f"tid_ext={guid},ioc_guid={guid},pkey=ffff,dgid={gid.replace(':', '')},"
                f"service_id={guid}")
            assert read(f"targets/ib_srpt/{gid}/device").strip() == ibdev
        assert "rdma_cm_port 5000" in dmesg_since(mark)
        # Its targets are the ports: none is added by hand.
        assert write("targets/ib_srpt/mgmt", "add_target foo") != 0
        assert sh("rmmod", "scst", check=False).returncode != 0, "scst.ko went under scst_srpt.ko"

        # A LUN on the target stays until the device goes.
        write("handlers/vdisk_nullio/mgmt", "add_device n0 size_mb=16")
        assert write(f"targets/ib_srpt/{gids[0]}/luns/mgmt", "add n0 0") == 0

        sh("rdma", "link", "delete", ibdev)
        assert os.listdir(DRIVER) == ["mgmt"], os.listdir(DRIVER)
    # The device is back: so is its target.
    with soft_rdma(kind) as ibdev:
        assert sorted(os.listdir(DRIVER)) == sorted(["mgmt"] + port_gids(ibdev))
        sh("rmmod", "scst_srpt")
        assert not os.path.exists(DRIVER)
    assert "n0" in os.listdir(os.path.join(ROOT, "devices"))


def test_logins_are_checked_and_rejected_with_their_reason(rdma_free):
    """ib_srp logs in over RDMA/CM (soft RoCE): a login for another target
    port, announcing requests larger than srp_max_req_size, or to a
    disabled target, is rejected with SRP-2's reason (SCST's for the last);
    the initiator's add_target fails, and no session stays."""
    with soft_rdma("rxe") as ibdev:
        ip = nic_ipv4(guest_nic())
        sh("modprobe", "-a", "ib_srp", "rdma_cm")
        guid = node_guid(ibdev)
        base = f"dest={ip}:5000,src={ip}"
        cases = [
            ("", f"id_ext=1234,ioc_guid={guid},{base}", "reason 0x00010003"),
            # ib_srp announces 8260-byte requests (immediate data).
            ("srp_max_req_size=1024", f"id_ext={guid},ioc_guid={guid},{base}",
             "reason 0x00010002"),
            ("disabled", f"id_ext={guid},ioc_guid={guid},{base}",
             "(target not enabled): reason 0x00010001"),
        ]
        # Parameters out of SCST's ranges fail the load, saying which.
        mark_dmesg("scst-test: srpt parameters")
        for bad in ("srp_max_req_size=100", "srp_max_rsp_size=8", "srpt_sq_size=1"):
            assert sh("insmod", SRPT_MODULE, bad, check=False).returncode != 0, bad
            assert f"{bad.split('=')[0]} {bad.split('=')[1]} is out of range" \
                in dmesg_since("scst-test: srpt parameters")
        for params, options, said in cases:
            sh("insmod", SRPT_MODULE, "rdma_cm_port=5000",
               *params.replace("disabled", "").split())
            if params == "disabled":
                write(f"targets/ib_srpt/{port_gids(ibdev)[0]}/enabled", "0")
            # The target port identifier, as the target shows it.
            info = read(f"targets/ib_srpt/{port_gids(ibdev)[0]}/login_info").strip()
            fields = dict(f.split("=") for f in info.split(","))
            assert fields["tid_ext"] == fields["ioc_guid"] == guid
            mark = f"scst-test: login {params} {options}"
            mark_dmesg(mark)
            assert srp_add_target(ibdev, options) != 0, options
            assert said in dmesg_since(mark), (options, dmesg_since(mark)[-2000:])
            assert os.listdir(os.path.join(DRIVER, port_gids(ibdev)[0], "sessions")) == []
            sh("rmmod", "scst_srpt")


def srp_scsi_devices():
    """The SCSI devices of ib_srp's hosts (sysfs directories)."""
    found = []
    for host in glob.glob("/sys/class/scsi_host/host*"):
        with open(os.path.join(host, "proc_name")) as f:
            if f.read().strip() != "ib_srp":
                continue
        found += glob.glob(os.path.join(host, "device", "target*", "*:*:*:*"))
    return sorted(found)


def srp_logout():
    """ib_srp's logout of every remote port."""
    for port in glob.glob("/sys/class/srp_remote_ports/port-*"):
        with open(os.path.join(port, "delete"), "w") as f:
            f.write("1")


@contextlib.contextmanager
def srp_login(kind, lun_mb=64, device=None):
    """scst_srpt on a soft RDMA device of `kind` exporting a fileio LUN of
    `lun_mb` MiB (or the SCST device named `device`) as srp0, and ib_srp
    logged in to it: yields (disk, RDMA device, sessions directory). Logs
    out afterwards, if still logged in."""
    with soft_rdma(kind) as ibdev:
        ip = nic_ipv4(guest_nic())
        sh("modprobe", "-a", "ib_srp", "rdma_cm")
        sh("insmod", SRPT_MODULE, "rdma_cm_port=5000")
        gid = port_gids(ibdev)[0]
        if not device:
            device = "srp0"
            path = backing_file(device, lun_mb << 20)
            # Thin, as the conformance runs' LUNs are (libiscsi's
            # provisioning tests skip themselves on a fully provisioned one).
            write("handlers/vdisk_fileio/mgmt",
                  f"add_device {device} filename={path}; thin_provisioned=1")
        assert write(f"targets/ib_srpt/{gid}/luns/mgmt", f"add {device} 0") == 0
        guid = node_guid(ibdev)
        mark = f"scst-test: srp login over {kind}"
        mark_dmesg(mark)
        options = f"id_ext={guid},ioc_guid={guid},dest={ip}:5000,src={ip}"
        assert srp_add_target(ibdev, options) == 0, dmesg_since(mark)[-3000:]
        sessions = os.path.join(DRIVER, gid, "sessions")
        # ib_srp opens a channel per completion vector (ch_count, two
        # here): one I_T nexus, one session.
        assert os.listdir(sessions) == [ip], os.listdir(sessions)
        disk = device_of(srp_scsi_devices, "block/sd*")
        assert disk, (srp_scsi_devices(), dmesg_since(mark)[-3000:])
        # udev's probes of the new disk end first (else the removal fails them).
        sh("udevadm", "settle", check=False)
        try:
            yield disk, ibdev, sessions
        finally:
            srp_logout()


def fio_verify(disk, bs, size, *extra):
    """fio writes `size` of `disk` in `bs` blocks at QD32 and reads every
    block back against its checksum."""
    r = subprocess.run(["fio", "--name=verify", f"--filename={disk}", "--direct=1",
                        "--ioengine=libaio", "--iodepth=32", f"--bs={bs}", f"--size={size}",
                        "--randseed=2612", "--verify=crc32c", "--verify_fatal=1",
                        "--do_verify=1", "--output-format=terse", *extra],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("kind", ["rxe", "siw"])
def test_io_through_an_srp_login(rdma_free, kind):
    """Through ib_srp's login (its channels one session, named by the
    initiator's address): fio verify at QD32 with 4 KiB random writes and
    1 MiB ones (RDMA READs of several regions, RDMA WRITEs chained before
    the responses), mkfs.ext4 and a clean fsck; its logout ends the
    sessions."""
    with srp_login(kind) as (disk, _, sessions):
        fio_verify(disk, "4k", "16M", "--rw=randwrite")
        fio_verify(disk, "1M", "32M", "--rw=write")
        sh("mkfs.ext4", "-q", "-F", disk)
        sh("fsck.ext4", "-f", "-n", disk)
        srp_logout()
        for _ in range(100):
            if not os.listdir(sessions):
                break
            time.sleep(0.1)
        assert os.listdir(sessions) == []


def test_lun_reset_and_device_removal_under_io(rdma_free):
    """A LUN reset from the initiator (sg_reset -d: SRP_TSK_MGMT) while fio
    runs completes, and fio goes on; then the RDMA device is deleted under
    fio: the target closes its channels, drops its sessions and its
    target, and scst_srpt unloads."""
    with srp_login("rxe") as (disk, ibdev, sessions):
        mark = "scst-test: srp lun reset"
        mark_dmesg(mark)
        fio = fio_running(disk, 10)
        time.sleep(3)
        sh("sg_reset", "-d", disk)
        out, err = fio.communicate(timeout=120)
        assert fio.returncode == 0, out + err
        log = dmesg_since(mark)
        assert "task management function 0x8: response 0" in log, log[-3000:]
        fio = fio_running(disk, 60)
        time.sleep(3)
        sh("rdma", "link", "delete", ibdev)
        assert os.listdir(DRIVER) == ["mgmt"], os.listdir(DRIVER)
        kill_fio(fio)
    sh("rmmod", "scst_srpt")
    assert "scst_srpt" not in modules()


def test_host_resets_log_in_again_under_io(rdma_free):
    """sg_reset -H while fio writes: each host reset is ib_srp's reconnect
    (its channels log out and in again, srp_reconnect_rport), five in a
    row. The target ends the old channels, the new ones make one session
    again, the commands ib_srp requeues complete, and every block fio wrote
    verifies. (ib_srp has no bus reset: sg_reset -b fails on it whatever
    the target.)"""
    with srp_login("rxe") as (disk, _, sessions):
        ip = os.listdir(sessions)[0]
        mark = "scst-test: srp host resets"
        mark_dmesg(mark)
        fio = subprocess.Popen(
            ["fio", "--name=verify", f"--filename={disk}", "--direct=1", "--ioengine=libaio",
             "--iodepth=32", "--bs=4k", "--size=64M", "--rw=randwrite", "--randseed=2612",
             "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--output-format=terse"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        resets = 0
        try:
            while resets < 5:
                time.sleep(1)
                assert fio.poll() is None, f"fio ended after {resets} resets"
                sh("sg_reset", "-H", disk)
                resets += 1
            out, err = fio.communicate(timeout=600)
        finally:
            if fio.poll() is None:
                fio.kill()
        assert fio.returncode == 0, out + err
        log = dmesg_since(mark)
        # ib_srp says so for every reconnect that succeeded.
        assert log.count("reconnect succeeded") >= resets, log[-3000:]
        assert os.listdir(sessions) == [ip], os.listdir(sessions)


def test_a_timed_out_command_is_aborted(rdma_free):
    """A READ the backend holds (a scst_user handler keeping it until task
    management aborts it) times out at the initiator (sd timeout 5 s): the
    SCSI error handler's abort is ib_srp's ABORT TASK, which reaches the
    handler and ends the command; the target answers the abort and sends
    no response for the aborted command, no LUN reset follows, and the
    retried READ returns the block."""
    path = backing_file("srpab", 16 << 20)
    lba = 5000
    with open(path, "r+b") as f:
        f.seek(lba * 512)
        f.write(b"held block".ljust(512, b"."))
    handler = Handler("srp0", path, "-t", "2", "--hold-lba", str(lba))
    try:
        with srp_login("rxe", device="srp0") as (disk, _, _):
            write(f"/sys/block/{os.path.basename(disk)}/device/timeout", "5")
            mark = "scst-test: srp abort"
            mark_dmesg(mark)
            r = subprocess.run(["dd", f"if={disk}", "bs=512", f"skip={lba}", "count=1",
                                "iflag=direct", "status=none"], capture_output=True, timeout=300)
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"held block".ljust(512, b".")
            log = dmesg_since(mark)
            assert "task management function 0x1: response 0" in log, log[-3000:]
            assert "task management function 0x8" not in log, log[-3000:]
            # What ib_srp says of a response to a tag it no longer has.
            assert "Null scmnd" not in log, log[-3000:]
    finally:
        said = handler.kill()
    held = [line.split()[2] for line in said.splitlines() if line.startswith("holding command")]
    assert len(held) == 1, said
    # The handler heard of the abort (fn 0: ABORT TASK) naming its command.
    assert re.search(rf"^task management received: fn 0 session \S+ command {held[0]}$", said,
                     re.M), said


def scsi_models():
    """The product identification of each ib_srp disk, by SCSI host."""
    models = {}
    for d in srp_scsi_devices():
        with open(os.path.join(d, "model")) as f:
            models[d.split("/")[4]] = f.read().strip()
    return models


def test_two_initiators_see_their_own_luns(rdma_free):
    """Two logins from two addresses (two initiator ports) are sessions of
    their own; an initiator group naming one address gives it its own
    LUN 0, the other sees the target's."""
    with soft_rdma("rxe") as ibdev:
        nic = guest_nic()
        ip = nic_ipv4(nic)
        other = "192.168.157.2"
        sh("ip", "addr", "add", f"{other}/24", "dev", nic)
        sh("modprobe", "-a", "ib_srp", "rdma_cm")
        sh("insmod", SRPT_MODULE, "rdma_cm_port=5000")
        t = f"targets/ib_srpt/{port_gids(ibdev)[0]}"
        for name in ("srpa", "srpb"):
            path = backing_file(name, 16 << 20)
            write("handlers/vdisk_fileio/mgmt", f"add_device {name} filename={path}")
        assert write(f"{t}/luns/mgmt", "add srpa 0") == 0
        assert write(f"{t}/ini_groups/mgmt", "create g2") == 0
        assert write(f"{t}/ini_groups/g2/initiators/mgmt", f"add {other}") == 0
        assert write(f"{t}/ini_groups/g2/luns/mgmt", "add srpb 0") == 0
        guid = node_guid(ibdev)
        for ext, src in ((1, ip), (2, other)):
            options = (f"id_ext={guid},ioc_guid={guid},initiator_ext={ext},"
                       f"dest={ip}:5000,src={src}")
            # The new address's GID may take a moment to reach rxe's table.
            for _ in range(50):
                if srp_add_target(ibdev, options) == 0:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"login from {src} failed")
        sessions = sorted(os.listdir(os.path.join(ROOT, t, "sessions")))
        assert sessions == sorted([ip, other]), sessions
        for _ in range(100):
            if len(scsi_models()) == 2:
                break
            time.sleep(0.1)
        assert sorted(scsi_models().values()) == ["srpa", "srpb"], scsi_models()
        sh("udevadm", "settle", check=False)
        srp_logout()
        sh("ip", "addr", "del", f"{other}/24", "dev", nic, check=False)


# libiscsi's suites through ib_srp's sg node: a slice in every run (data
# both ways, sense, a task attribute held in order); with
# SRPT_CONFORMANCE=1, every suite scst-rs implements over rxe and siw,
# each table kept in the results (iscsi-test-cu-srp-<kind>.txt).
LIBISCSI_SLICE = ["SCSI.TestUnitReady", "SCSI.Inquiry", "SCSI.ReadCapacity16",
                  "SCSI.Read16", "SCSI.Write16", "SCSI.CompareAndWrite", "SCSI.ModeSense6"]
FULL = os.environ.get("SRPT_CONFORMANCE") == "1"
# Beyond SG_IO_LIMITED: a test whose single command is larger than ib_srp's
# disk takes in one request, which SG_IO refuses ("SG_IO ioctl failed")
# before anything reaches the target (over scst_local it passes).
SRP_SG_IO_LIMITED = {
    "SCSI.ExtendedCopy.Simple": "reads its 1 MiB copy back in one READ(16)",
}


@pytest.mark.parametrize("kind", ["rxe", "siw"] if FULL else ["rxe"])
def test_libiscsi_suites_over_srp(rdma_free, kind):
    """libiscsi's SCSI suites on the SRP disk's /dev/sg node pass, as over
    scst_local's (a test that skips itself is not a pass)."""
    with srp_login(kind, lun_mb=256) as _:
        sg = device_of(srp_scsi_devices, "scsi_generic/sg*")
        assert sg, srp_scsi_devices()
        if FULL:
            failed, _ = iscsi_test_cu(sg, f"iscsi-test-cu-srp-{kind}.txt",
                                      allowed_skips=SKIPS_NEEDING_CONFIG | NEEDS_ISCSI)
            unexpected = failed - set(SG_IO_LIMITED) - set(SRP_SG_IO_LIMITED)
            assert not unexpected, f"iscsi-test-cu failures: {sorted(unexpected)}"
            return
        allowed = SKIPS_NEEDING_CONFIG | NEEDS_ISCSI
        for suite in LIBISCSI_SLICE:
            verdicts = libiscsi_suite(sg, suite)
            failed = [t for t, ok in verdicts.items() if not ok and t not in allowed]
            assert verdicts and not failed, (suite, failed)

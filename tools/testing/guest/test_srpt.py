# SPDX-License-Identifier: GPL-2.0
"""The SRP target's place beside the RDMA stack: scst.ko loads without it,
scst_srpt.ko (which links ib_core and rdma_cm) brings targets/ib_srpt up,
and each port of each RDMA device is a target, named by its GID, that
comes and goes with the device (soft RoCE and soft iWARP on the guest's
NIC)."""

import contextlib
import errno
import glob
import json
import os
import re
import select
import struct
import subprocess
import time

import pytest

from conftest import (HELD_BLOCK, NEEDS_ISCSI, REPO, ROOT, SG_IO_LIMITED, SKIPS_NEEDING_CONFIG,
                      SRPT_MODULE, Handler, abort_received, backing_file, device_of,
                      dmesg_since, fio_running, guest_nic, held_block_backing, held_commands,
                      kill_fio, libiscsi_table, load, loaded, mark_dmesg, nic_ipv4, node_guid,
                      not_passed, port_gids, read, read_block, rw10, sh, side_by_side, soft_rdma,
                      srp_add_target, srp_hosts, srp_hosts_gone, srp_logout, unload,
                      unload_rdma_stack, write)
from peers import LIO_SRPT_PORT, lio_backstores, lio_srpt

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
        # Bounded: a channel that never ends fails the test, not the run.
        timed_unload()
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
        port_attributes(ibdev, gids[0])
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


def port_attributes(ibdev, gid):
    """SCST's link_layer, port_id and comp_v_mask of port 1's target:
    shown, set, and refused with a reason when wrong."""
    t = f"targets/ib_srpt/{gid}"
    with open(f"/sys/class/infiniband/{ibdev}/ports/1/link_layer") as f:
        assert read(f"{t}/link_layer") == f.read()
    assert write(f"{t}/link_layer", "InfiniBand") != 0
    assert read(f"{t}/port_id") == "SCST SRP target\n"
    assert write(f"{t}/port_id", "rack 4 srpt") == 0
    assert read(f"{t}/port_id") == "rack 4 srpt\n[key]\n"
    assert write(f"{t}/port_id", "x" * 64) == errno.EINVAL
    assert "at most 63" in read("last_sysfs_mgmt_res"), read("last_sysfs_mgmt_res")
    assert read(f"{t}/port_id") == "rack 4 srpt\n[key]\n"
    # Every completion vector of the device, at first.
    mask, key = read(f"{t}/comp_v_mask").split("\n")[:2]
    assert key == "[key]"
    vectors = bin(int(mask.replace(",", ""), 16)).count("1")
    assert vectors >= 1 and int(mask.replace(",", ""), 16) == (1 << vectors) - 1, mask
    for bad, reason in (("0", "at least one"), (f"{1 << vectors:x}", "past the device"),
                        ("0x1", "hex mask")):
        assert write(f"{t}/comp_v_mask", bad) == errno.EINVAL, bad
        assert reason in read("last_sysfs_mgmt_res"), (bad, read("last_sysfs_mgmt_res"))
    assert read(f"{t}/comp_v_mask").split("\n")[0] == mask
    assert write(f"{t}/comp_v_mask", "1") == 0
    assert int(read(f"{t}/comp_v_mask").split("\n")[0], 16) == 1
    return vectors


def login_vectors(log):
    """The completion vectors the logins in `log` took, in order."""
    return [int(v) for v in re.findall(r"logged in on .*completion vector (\d+),", log)]


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
    return sorted(d for host in srp_hosts() for d in
                  glob.glob(f"/sys/class/scsi_host/{host}/device/target*/*:*:*:*"))


@contextlib.contextmanager
def srp_login(kind, lun_mb=64, device=None, srpt_params=()):
    """scst_srpt (loaded with `srpt_params` besides its port) on a soft
    RDMA device of `kind` exporting a fileio LUN of `lun_mb` MiB (or the
    SCST device named `device`) as srp0, and ib_srp logged in to it:
    yields (disk, RDMA device, sessions directory). Logs out afterwards,
    if still logged in."""
    with soft_rdma(kind) as ibdev:
        ip = nic_ipv4(guest_nic())
        sh("modprobe", "-a", "ib_srp", "rdma_cm")
        sh("insmod", SRPT_MODULE, "rdma_cm_port=5000", *srpt_params)
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


def sessions_gone(sessions, seconds=10):
    """Waits up to `seconds` for the target's `sessions` directory to
    empty (a logout ends sessions asynchronously); returns whether it
    did."""
    for _ in range(seconds * 10):
        if not os.listdir(sessions):
            return True
        time.sleep(0.1)
    return False


def fio_verify(disk, bs, size, *extra):
    """fio writes `size` of `disk` in `bs` blocks at QD32 and reads every
    block back against its checksum."""
    r = subprocess.run(["fio", "--name=verify", f"--filename={disk}", "--allow_file_create=0",
                        "--direct=1",
                        "--ioengine=libaio", "--iodepth=32", f"--bs={bs}", f"--size={size}",
                        "--randseed=2612", "--verify=crc32c", "--verify_fatal=1",
                        "--do_verify=1", "--output-format=terse", *extra],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("kind", ["rxe", "siw"])
def test_io_through_an_srp_login(rdma_free, kind):
    """Through ib_srp's login (its channels one session, named by the
    initiator's address, immediate data granted): fio verify at QD32 with
    4 KiB random writes (immediate data) and 1 MiB ones (RDMA READs of
    several regions, RDMA WRITEs chained before the responses), mkfs.ext4
    and a clean fsck; its logout ends the
    sessions. Its channels took the device's completion vectors in turn;
    with comp_v_mask naming one, a new login's channels all take that
    one."""
    with srp_login(kind) as (disk, ibdev, sessions):
        gid = port_gids(ibdev)[0]
        t = f"targets/ib_srpt/{gid}"
        mask = int(read(f"{t}/comp_v_mask").split("\n")[0].replace(",", ""), 16)
        vectors = bin(mask).count("1")
        log = dmesg_since(f"scst-test: srp login over {kind}")
        taken = login_vectors(log)
        assert taken == [i % vectors for i in range(len(taken))] and taken, taken
        # Immediate data, at ib_srp's offset: its 4 KiB writes below carry
        # their data in the SRP_CMD (at most 8 KiB do; 1 MiB ones are
        # RDMA READs).
        assert "using immediate data" in log, log[-3000:]
        assert len(re.findall(r"logged in on .*immediate data at 68\)", log)) == len(taken), \
            log[-3000:]
        fio_verify(disk, "4k", "16M", "--rw=randwrite")
        fio_verify(disk, "1M", "32M", "--rw=write")
        sh("mkfs.ext4", "-q", "-F", disk)
        sh("fsck.ext4", "-f", "-n", disk)
        srp_logout()
        sessions_gone(sessions)
        assert os.listdir(sessions) == []
        last = vectors - 1
        assert write(f"{t}/comp_v_mask", f"{1 << last:x}") == 0
        mark = f"scst-test: srp login with one completion vector over {kind}"
        mark_dmesg(mark)
        srp_path_login(ibdev, 1)
        taken = login_vectors(dmesg_since(mark))
        assert taken and set(taken) == {last}, taken
        srp_logout()


def shared_receive_queues(ibdev):
    """The shared receive queues on `ibdev` (rdma resource), each with the
    QP numbers on it."""
    out = sh("rdma", "-j", "resource", "show", "srq", "dev", ibdev).stdout
    queues = []
    for srq in json.loads(out or "[]"):
        qps = set()
        # lqpn: ["17-18", "20"] (a string "17-18,20" in older iproute2).
        parts = srq.get("lqpn", [])
        for part in parts.split(",") if isinstance(parts, str) else parts:
            part = str(part)
            if "-" in part:
                first, last = part.split("-")
                qps |= set(range(int(first), int(last) + 1))
            elif part:
                qps.add(int(part))
        queues.append((srq["srqn"], qps))
    return queues


def srq_credits(log):
    """The credits each login in `log` got of the shared receive queue."""
    return [int(n) for n in re.findall(r"logged in on .*, (\d+) credits of the shared receive queue\)",
                                       log)]


def srq_left_by_qps(ibdev, seconds=30):
    """Waits up to `seconds` for the device's shared receive queue to have
    no QP on it (every channel on it destroyed); returns the queues."""
    for _ in range(seconds * 10):
        queues = shared_receive_queues(ibdev)
        if all(not qps for _, qps in queues):
            break
        time.sleep(0.1)
    return queues


@pytest.mark.parametrize("kind", ["rxe", "siw"])
def test_channels_share_a_receive_queue(rdma_free, kind):
    """use_srq=1 with srpt_srq_size=64: the device gets one shared receive
    queue, and each login's channels credits out of it (each at most half
    of what is left: 32 and 16), never more than its units, so that no
    request finds it empty; a request that comes before a send unit is
    free again is kept, not dropped. Every channel is on it, say the log and the
    RDMA core; fio verifies 4 KiB and 1 MiB writes at QD32. Three times the
    initiator logs out under fio (its requests in flight flush back to the
    queue) and, once their QPs left the queue, in again (as a target port
    of its own: ib_srp refuses the same one while it still tears the last
    one down): its channels get the same credits again, and fio verifies.
    After the last logout no QP is left on the queue, and with scst_srpt
    gone no queue is left."""
    params = ("use_srq=1", "srpt_srq_size=64")
    mark = f"scst-test: srp shared receive queue over {kind}"
    mark_dmesg(mark)
    with srp_login(kind, srpt_params=params) as (disk, ibdev, sessions):
        log = dmesg_since(mark)
        assert f"ib_srpt: {ibdev}: shared receive queue of 64 units" in log, log[-3000:]
        logins = re.findall(r"logged in on .*\)", log)
        credits = srq_credits(log)
        assert len(credits) == len(logins) == 2 and credits == [32, 16], logins
        queues = shared_receive_queues(ibdev)
        assert len(queues) == 1 and len(queues[0][1]) == len(logins), (queues, logins)
        fio_verify(disk, "4k", "8M", "--rw=randwrite")
        fio_verify(disk, "1M", "16M", "--rw=write")
        for round in range(3):
            fio = fio_running(disk, 60)
            time.sleep(2)
            srp_logout()
            assert srp_hosts_gone(), "ib_srp's logout did not end"
            kill_fio(fio)
            sessions_gone(sessions)
            assert os.listdir(sessions) == [], os.listdir(sessions)
            # The channels' credits come back once they are destroyed,
            # right after their QPs.
            queues = srq_left_by_qps(ibdev)
            assert len(queues) == 1 and not queues[0][1], queues
            time.sleep(0.5)
            relogin = f"scst-test: srp relogin {round} on a shared receive queue"
            mark_dmesg(relogin)
            # A target port of its own (initiator_ext): ib_srp refuses the
            # same one while it still tears the last one down.
            _, disk = srp_path_login(ibdev, round + 1)
            # The channels that left gave their credits back.
            assert srq_credits(dmesg_since(relogin)) == [32, 16], dmesg_since(relogin)[-3000:]
            sh("udevadm", "settle", check=False)
            fio_verify(disk, "4k", "4M", "--rw=randwrite")
        srp_logout()
        assert srp_hosts_gone(), "ib_srp's logout did not end"
        sessions_gone(sessions)
        queues = srq_left_by_qps(ibdev)
        assert len(queues) == 1 and not queues[0][1], queues
        # At QD32 on 16 credits ib_srp uses a credit again before the
        # response's send completed here: kept, never dropped.
        assert "beyond the credits granted" not in dmesg_since(mark)
        timed_unload()
        assert shared_receive_queues(ibdev) == []


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
            ["fio", "--name=verify", f"--filename={disk}", "--allow_file_create=0",
             "--direct=1", "--ioengine=libaio",
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


def host_disk(host):
    """/dev/sdX of LUN 0 behind ib_srp's SCSI host `host`."""
    return device_of(lambda: sorted(
        glob.glob(f"/sys/class/scsi_host/{host}/device/target*/*:*:*:0")), "block/sd*")


def srp_path_login(ibdev, ext):
    """ib_srp's login with initiator_ext `ext` (a nexus of its own) to
    scst_srpt on port 5000: (SCSI host, disk)."""
    guid = node_guid(ibdev)
    ip = nic_ipv4(guest_nic())
    before = srp_hosts()
    options = f"id_ext={guid},ioc_guid={guid},initiator_ext={ext},dest={ip}:5000,src={ip}"
    assert srp_add_target(ibdev, options) == 0, f"login {ext} failed"
    for _ in range(100):
        new = srp_hosts() - before
        if new:
            break
        time.sleep(0.1)
    host = new.pop()
    disk = host_disk(host)
    assert disk, f"no disk behind {host}"
    return host, disk


def srp_path_logout(host):
    """ib_srp's logout of the remote port behind `host`; returns once the
    host is gone."""
    with open(f"/sys/class/srp_remote_ports/port-{host[len('host'):]}:1/delete", "w") as f:
        f.write("1")
    for _ in range(300):
        if host not in srp_hosts():
            return
        time.sleep(0.1)
    raise AssertionError(f"{host} still there after its logout")


def dev_number(disk):
    n = os.stat(disk).st_rdev
    return f"{os.major(n)}:{os.minor(n)}"


def test_relogin_in_a_loop_under_io_through_multipath(rdma_free):
    """blktests' srp/002 and srp/011 shape, without multipathd: two ib_srp
    logins (initiator_ext 1 and 2: two I_T nexuses, two disks of one LUN)
    under one dm-multipath table that queues while no path is left. While
    fio writes through it and reads every block back against its checksum,
    one path at a time logs out and logs in again, its new disk replacing
    the dead one in the table, four rounds (a fio run that ends meanwhile
    is followed by another). Every block verifies, each round leaves two
    sessions, and nothing is left after the last logout."""
    rounds = 4
    with srp_login("rxe") as (_, ibdev, sessions):
        srp_logout()
        srp_hosts_gone()
        paths = [srp_path_login(ibdev, ext) for ext in (1, 2)]
        sh("udevadm", "settle", check=False)
        sectors = int(open(f"/sys/block/{os.path.basename(paths[0][1])}/size").read())

        def table():
            devs = " ".join(f"{dev_number(d)} 1" for _, d in paths)
            return (f"0 {sectors} multipath 1 queue_if_no_path 0 1 1 "
                    f"round-robin 0 2 1 {devs}")
        sh("dmsetup", "create", "srp-mp", "--table", table())
        mp = "/dev/mapper/srp-mp"

        def verifying(seed):
            return subprocess.Popen(
                ["fio", "--name=verify", f"--filename={mp}", "--allow_file_create=0", "--direct=1",
                 "--ioengine=libaio", "--iodepth=32", "--bs=4k", "--size=32M",
                 "--rw=randwrite", f"--randseed={seed}", "--verify=crc32c",
                 "--verify_fatal=1", "--do_verify=1", "--output-format=terse"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs = 1
        fio = verifying(runs)
        done = 0
        try:
            while done < rounds:
                time.sleep(1)
                # Each round under I/O: a run that ended passed, and
                # another one starts.
                if fio.poll() is not None:
                    out, err = fio.communicate()
                    assert fio.returncode == 0, f"run {runs}: {out}{err}"
                    runs += 1
                    fio = verifying(runs)
                i = done % 2
                host, _ = paths[i]
                srp_path_logout(host)
                paths[i] = srp_path_login(ibdev, i + 1)
                sh("dmsetup", "reload", "srp-mp", "--table", table())
                sh("dmsetup", "resume", "srp-mp")
                done += 1
                mark_dmesg(f"scst-test: srp relogin {done} done")
                assert len(os.listdir(sessions)) == 2, os.listdir(sessions)
            out, err = fio.communicate(timeout=600)
            assert fio.returncode == 0, f"run {runs}: {out}{err}"
        finally:
            if fio.poll() is None:
                fio.kill()
                fio.communicate()
            subprocess.run(["dmsetup", "remove", "--retry", "srp-mp"], check=False)
        srp_logout()
        sessions_gone(sessions)
        assert os.listdir(sessions) == [], os.listdir(sessions)


UNLOAD_BOUND_S = 60


def timed_unload():
    """rmmod scst_srpt, failing the test past UNLOAD_BOUND_S (the module is
    left to finish unloading in the background then); returns seconds."""
    start = time.monotonic()
    rmmod = subprocess.Popen(["rmmod", "scst_srpt"], stderr=subprocess.PIPE, text=True)
    try:
        _, err = rmmod.communicate(timeout=UNLOAD_BOUND_S)
    except subprocess.TimeoutExpired:
        with open(f"/proc/{rmmod.pid}/stack") as f:
            stack = f.read()
        raise AssertionError(f"rmmod scst_srpt still waits after {UNLOAD_BOUND_S} s:\n{stack}"
                             + dmesg_since("scst-test: srp unload")[-3000:])
    assert rmmod.returncode == 0, err
    return time.monotonic() - start


def test_unload_while_initiators_log_out_or_write(rdma_free):
    """scst_srpt unloads at once however ib_srp leaves. First with ib_srp
    logged in to it and to LIO's ib_srpt on the same rxe port, writing to
    both, and its logouts of both still under way (it logs out
    asynchronously) while LIO goes; then with ib_srp logged in and writing,
    its channels closed under its commands (its reconnects find no
    listener). Every channel ends, the module goes, and a new load serves
    a new login."""
    with srp_login("rxe") as (disk, ibdev, sessions):
        ip = nic_ipv4(guest_nic())
        path = backing_file("srp-lio-unload", 16 << 20)
        guid = node_guid(ibdev)
        with lio_backstores(path) as cores, lio_srpt(cores, ibdev, ip):
            before = srp_hosts()
            options = (f"id_ext={guid},ioc_guid={guid},initiator_ext=2,"
                       f"dest={ip}:{LIO_SRPT_PORT},src={ip}")
            assert srp_add_target(ibdev, options) == 0
            lio_disk = device_of(lambda: sorted(
                d for h in srp_hosts() - before
                for d in glob.glob(f"/sys/class/scsi_host/{h}/device/target*/*:*:*:*")),
                "block/sd*")
            assert lio_disk, srp_hosts()
            sh("udevadm", "settle", check=False)
            writers = [fio_running(d, 30) for d in (disk, lio_disk)]
            time.sleep(3)
            mark = "scst-test: srp unload while logging out"
            mark_dmesg(mark)
            srp_logout()
        # LIO went; ib_srp may still be leaving either.
        took = timed_unload()
        for fio in writers:
            kill_fio(fio)
        assert not os.path.exists(DRIVER), dmesg_since(mark)[-3000:]
        print(f"unload while logging out: {took:.1f} s")
        srp_hosts_gone()
    with srp_login("rxe", device="srp0") as (disk, _, _):
        fio = fio_running(disk, 30)
        time.sleep(3)
        mark = "scst-test: srp unload under I/O"
        mark_dmesg(mark)
        took = timed_unload()
        kill_fio(fio)
        log = dmesg_since(mark)
        assert "waits for" not in log, log[-3000:]
        print(f"unload under I/O: {took:.1f} s")
        srp_logout()
    srp_hosts_gone()
    # Loaded again, it serves a new login.
    with srp_login("rxe", device="srp0") as (disk, _, _):
        r = read_block(disk, 0)
        assert r.returncode == 0, r.stderr


def test_a_timed_out_command_is_aborted(rdma_free):
    """A READ the backend holds (a scst_user handler keeping it until task
    management aborts it) times out at the initiator (sd timeout 5 s): the
    SCSI error handler's abort is ib_srp's ABORT TASK, which reaches the
    handler and ends the command; the target answers the abort and sends
    no response for the aborted command, no LUN reset follows, and the
    retried READ returns the block."""
    lba = 5000
    path = held_block_backing("srpab", lba)
    handler = Handler("srp0", path, "-t", "2", "--hold-lba", str(lba))
    try:
        with srp_login("rxe", device="srp0") as (disk, _, _):
            write(f"/sys/block/{os.path.basename(disk)}/device/timeout", "5")
            mark = "scst-test: srp abort"
            mark_dmesg(mark)
            r = read_block(disk, lba)
            assert r.returncode == 0, r.stderr
            assert r.stdout == HELD_BLOCK
            log = dmesg_since(mark)
            assert "task management function 0x1: response 0" in log, log[-3000:]
            assert "task management function 0x8" not in log, log[-3000:]
            # What ib_srp says of a response to a tag it no longer has.
            assert "Null scmnd" not in log, log[-3000:]
    finally:
        said = handler.kill()
    held = held_commands(said)
    assert len(held) == 1, said
    # The handler heard of the abort naming its command.
    assert abort_received(said, held[0]), said


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


# libiscsi's suites through ib_srp's sg node, beside LIO's ib_srpt on the
# same guest: a slice in every run (data both ways, sense, a task
# attribute held in order); with SRPT_CONFORMANCE=1, every suite scst-rs
# implements over rxe and siw, LIO's over rxe, each table kept in the
# results (iscsi-test-cu-srp-<kind>.txt, iscsi-test-cu-srp-lio-rxe.txt)
# and side by side in iscsi-test-cu-srp-peers.md.
SRP_SLICE = "TestUnitReady Inquiry ReadCapacity16 Read16 Write16 CompareAndWrite ModeSense6"
FULL = os.environ.get("SRPT_CONFORMANCE") == "1"
# Beyond SG_IO_LIMITED: a test whose single command is larger than ib_srp's
# disk takes in one request, which SG_IO refuses ("SG_IO ioctl failed")
# before anything reaches the target (over scst_local it passes).
SRP_SG_IO_LIMITED = {
    "SCSI.ExtendedCopy.Simple": "reads its 1 MiB copy back in one READ(16)",
}
SRP_LUN_SIZE = 256 << 20


def srp_conformance(name):
    """libiscsi's suites (the slice, or with FULL every one) on the sg node
    of ib_srp's disk; {test: verdict}, the table kept as
    iscsi-test-cu-`name`.txt in the scratch directory."""
    sg = device_of(srp_scsi_devices, "scsi_generic/sg*")
    assert sg, srp_scsi_devices()
    verdicts = libiscsi_table(sg, f"iscsi-test-cu-{name}.txt",
                              suites=None if FULL else SRP_SLICE)
    assert len(verdicts) > (100 if FULL else 20), f"{name}: too few tests ran"
    return verdicts


@contextlib.contextmanager
def console_quiet():
    """Only critical messages on the console meanwhile (LIO logs each bad
    command libiscsi sends as an error: thousands of lines); dmesg keeps
    them all."""
    with open("/proc/sys/kernel/printk") as f:
        level = f.read().split()[0]
    assert write("/proc/sys/kernel/printk", "2") == 0
    try:
        yield
    finally:
        write("/proc/sys/kernel/printk", level)


@contextlib.contextmanager
def lio_srp_login(kind):
    """LIO's ib_srpt on a soft RDMA device of `kind` serving a fileio LUN of
    SRP_LUN_SIZE, and ib_srp logged in to it (logged out afterwards)."""
    with soft_rdma(kind) as ibdev, console_quiet():
        ip = nic_ipv4(guest_nic())
        sh("modprobe", "-a", "ib_srp", "rdma_cm")
        path = backing_file("srp-lio", SRP_LUN_SIZE)
        with lio_backstores(path) as cores, lio_srpt(cores, ibdev, ip):
            guid = node_guid(ibdev)
            mark = f"scst-test: LIO srp login over {kind}"
            mark_dmesg(mark)
            options = f"id_ext={guid},ioc_guid={guid},dest={ip}:{LIO_SRPT_PORT},src={ip}"
            assert srp_add_target(ibdev, options) == 0, dmesg_since(mark)[-3000:]
            try:
                sh("udevadm", "settle", check=False)
                yield
            finally:
                srp_logout()
                # LIO ends its sessions before its LUNs can go.
                for _ in range(100):
                    if not srp_scsi_devices():
                        break
                    time.sleep(0.1)
                time.sleep(1)


def test_libiscsi_suites_over_srp_beside_lio(rdma_free):
    """libiscsi's SCSI suites on the SRP disk's /dev/sg node pass (a test
    that skips itself is not a pass, unless it needs a configuration the
    LUN does not have), over rxe (and siw, with SRPT_CONFORMANCE=1); and
    scst-rs passes every test LIO's ib_srpt passes on the same guest."""
    tables = {}
    for kind in ["rxe", "siw"] if FULL else ["rxe"]:
        with srp_login(kind, lun_mb=SRP_LUN_SIZE >> 20):
            tables[f"scst-rs {kind}"] = srp_conformance(f"srp-{kind}")
        sh("rmmod", "scst_srpt")
    for label, table in tables.items():
        failed = not_passed(table, SKIPS_NEEDING_CONFIG | NEEDS_ISCSI)
        unexpected = failed - set(SG_IO_LIMITED) - set(SRP_SG_IO_LIMITED)
        assert not unexpected, f"{label}: iscsi-test-cu failures: {sorted(unexpected)}"
    with lio_srp_login("rxe"):
        tables["LIO rxe"] = lio = srp_conformance("srp-lio-rxe")
    side_by_side("iscsi-test-cu-srp-peers.md",
                 "iscsi-test-cu --dataloss through ib_srp: scst-rs and LIO's ib_srpt in one "
                 "guest run",
                 f"kernel {os.uname().release}; a test that skips itself is not a pass", tables)
    # An SG_IO limit is the initiator's, whichever target answers; LIO may
    # pass such a test by never reaching it (WriteSame16.Unmap reads 65536
    # blocks back in one READ(16) only from a LUN reporting LBPRZ and a
    # MAXIMUM WRITE SAME LENGTH of at least that; LIO's fileio reports 0
    # and 4096).
    limited = set(SG_IO_LIMITED) | set(SRP_SG_IO_LIMITED)
    behind = sorted(n for n, v in lio.items()
                    if v == "passed" and tables["scst-rs rxe"].get(n) != "passed"
                    and n not in limited)
    assert not behind, f"scst-rs fails what LIO's ib_srpt passes: {behind}"


# Units no real initiator sends, from srp-raw (tools/testing/srp-raw): a
# hand-made SRP initiator over RDMA/CM that sends the bytes it is given.
SRP_RAW = os.path.join(REPO, "tools/testing/srp-raw/srp-raw")
LOGIN_RSP, RSP, LOGIN_REJ = 0xC0, 0xC1, 0xC2


IMMED_REQUESTED = LOGIN_RSP_IMMED_SUPP = 0x80
# ib_srp's immediate data offset: an SRP_CMD, 16 bytes of additional CDB,
# the 4-byte immediate descriptor.
IMM_OFFSET = 48 + 16 + 4


def srp_login_req(guid, it_iu_len=8260, buf_fmt=0x6, flags=0, opcode=0, imm_offset=0):
    """SRP_LOGIN_REQ in RDMA/CM's layout (struct srp_login_req_rdma) to
    the target port (guid, guid)."""
    port = bytes.fromhex(guid) * 2
    return (struct.pack(">QHBBI", 1, buf_fmt, flags, opcode, it_iu_len) +
            bytes.fromhex("fe80000000000000") + bytes.fromhex(guid) + port +
            struct.pack(">H", imm_offset) + bytes(6))


def srp_cmd(tag, cdb, in_desc=b"", in_fmt=0, out_fmt=0, out_cnt=0, in_cnt=0, add_cdb_len=0,
            lun=0):
    """SRP_CMD for `lun` with descriptors `in_desc` appended."""
    return (bytes([0x02, 0, 0, 0, 0, (out_fmt << 4) | in_fmt, out_cnt, in_cnt]) +
            struct.pack(">Q", tag) + bytes(4) + struct.pack(">H", lun) + bytes(6) +
            bytes([0, 0, 0, add_cdb_len]) + bytes(cdb).ljust(16, b"\0") + in_desc)


def srp_immediate_write(tag, lba, data, stated=None, offset=IMM_OFFSET, lun=0):
    """WRITE(10) of `data` (512-byte blocks) at `lba`, carried in the unit
    at `offset` as immediate data whose descriptor states `stated` bytes
    (by default, all of them)."""
    cdb = rw10(0x2A, lba, len(data) // 512)
    desc = struct.pack(">I", len(data) if stated is None else stated)
    unit = srp_cmd(tag, cdb, desc, out_fmt=3, lun=lun)
    return unit.ljust(offset, b"\0") + data


def srp_tsk_mgmt(tag, function, task_tag=0):
    return (bytes([0x01]) + bytes(7) + struct.pack(">Q", tag) + bytes(4) + bytes(8) +
            bytes([0, 0, function, 0]) + struct.pack(">Q", task_tag) + bytes(8))


class RawSrp:
    """srp-raw logged in (or not) with the login request `login`. A
    context manager: the process goes at its end, whatever happened (an
    RDMA device cannot go while a process has it open)."""

    def __init__(self, ip, login):
        assert os.path.exists(SRP_RAW), "build tools/testing/srp-raw first (make)"
        # Unbuffered: select() must see every line not yet read.
        self.proc = subprocess.Popen([SRP_RAW, ip, ip, "5000", login.hex()], bufsize=0,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __enter__(self):
        try:
            self.outcome = self.line().split()
            if self.outcome[0] == "ESTABLISHED":
                _, addr, rkey = self.line().split()
                self.addr, self.rkey = int(addr), int(rkey)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_):
        self.close()

    def line(self, timeout=60):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "srp-raw said nothing"
        line = self.proc.stdout.readline()
        assert line, f"srp-raw exited with {self.proc.wait(timeout=10)}"
        return line.decode().strip()

    def ask(self, command):
        self.proc.stdin.write(command.encode() + b"\n")
        return self.line()

    def send(self, unit, ms=3000):
        """Sends `unit`: the unit that came back (bytes), or what happened
        instead ("TIMEOUT", "DISCONNECTED", "SEND_ERROR ...")."""
        said = self.ask(f"send {unit.hex()} {ms}")
        return bytes.fromhex(said.split()[1]) if said.startswith("RECV ") else said

    def direct(self, length, offset=0):
        """A direct descriptor of `length` bytes of srp-raw's buffer."""
        return struct.pack(">QII", self.addr + offset, self.rkey, length)

    def close(self):
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def srp_rsp(unit):
    """(tag, status, sense) of an SRP_RSP."""
    assert isinstance(unit, bytes) and unit[0] == RSP, unit
    sense_len, resp_len = struct.unpack(">II", unit[28:36])
    sense = unit[36 + resp_len:36 + resp_len + sense_len] if unit[18] & 0x2 else b""
    return struct.unpack(">Q", unit[8:16])[0], unit[19], sense


@contextlib.contextmanager
def raw_target(name):
    """scst_srpt on an rxe device exporting a 16 MiB fileio LUN `name` as
    LUN 0, for srp-raw: yields (address, node GUID, target GID)."""
    with soft_rdma("rxe") as ibdev:
        ip = nic_ipv4(guest_nic())
        sh("modprobe", "-a", "rdma_cm", "rdma_ucm", "ib_uverbs")
        sh("insmod", SRPT_MODULE, "rdma_cm_port=5000")
        gid = port_gids(ibdev)[0]
        path = backing_file(name, 16 << 20)
        write("handlers/vdisk_fileio/mgmt", f"add_device {name} filename={path}")
        assert write(f"targets/ib_srpt/{gid}/luns/mgmt", f"add {name} 0") == 0
        yield ip, node_guid(ibdev), gid


def test_malformed_logins_and_units_are_answered(rdma_free):
    """A hand-made initiator: logins that are short, of another unit type,
    announcing a request size below an SRP_CMD's or no descriptor format
    the target knows are rejected with their reason; on a channel, an
    SRP_CMD with more descriptors than it holds, an additional CDB that
    overruns it, or too short to hold its CDB gets CHECK CONDITION INVALID
    FIELD IN INFORMATION UNIT; a unit of no known type is ignored; task
    management for a tag that is not there completes and an unknown
    function is not supported; and a unit larger than the granted request
    size ends the channel. Between them a direct-descriptor INQUIRY
    returns its data: the channel survived each."""
    with raw_target("srpraw") as (ip, guid, gid):
        mark = "scst-test: srp raw"
        mark_dmesg(mark)
        good = srp_login_req(guid)
        rejected = {
            # RoCE's CM pads it with zeros: no target port identifier.
            "short": (good[:40], 0x00010003),
            "not a login": (srp_login_req(guid, opcode=0x02), 0x00010000),
            "request size below an SRP_CMD": (srp_login_req(guid, it_iu_len=40), 0x00010002),
            "no known descriptor format": (srp_login_req(guid, buf_fmt=0x1), 0x00010004),
        }
        for what, (login, reason) in rejected.items():
            with RawSrp(ip, login) as raw:
                assert raw.outcome[0] == "REJECTED", (what, raw.outcome)
                rej = bytes.fromhex(raw.outcome[2])
                assert rej[0] == LOGIN_REJ, (what, rej.hex())
                if reason is not None:
                    assert struct.unpack(">I", rej[4:8])[0] == reason, (what, rej.hex())
        assert "malformed RDMA/CM login" in dmesg_since(mark)

        with RawSrp(ip, good) as raw:
            assert raw.outcome[0] == "ESTABLISHED", raw.outcome
            rsp = bytes.fromhex(raw.outcome[1])
            assert rsp[0] == LOGIN_RSP and struct.unpack(">I", rsp[4:8])[0] > 8, rsp.hex()
            max_it_iu_len = struct.unpack(">I", rsp[16:20])[0]
            inquiry = [0x12, 0, 0, 0, 36, 0]
            tags = iter(range(100, 1000))

            def inquiry_works():
                raw.ask("fill 0 " + "00" * 36)
                tag = next(tags)
                assert srp_rsp(raw.send(srp_cmd(tag, inquiry, raw.direct(36), in_fmt=1,
                                                in_cnt=1))) == (tag, 0, b"")
                data = bytes.fromhex(raw.ask("data 0 36").split()[1])
                assert data[8:16] == b"SCST_FIO", data

            inquiry_works()
            invalid_field_in_iu = (0x05, 0x0E, 0x03)
            malformed = {
                # Indirect data-in naming five descriptors, holding none.
                "descriptor count": srp_cmd(next(tags), inquiry, in_fmt=2, in_cnt=5),
                # An additional CDB of 64 bytes the unit does not carry.
                "additional CDB": srp_cmd(next(tags), inquiry, add_cdb_len=16 << 2),
                # Cut inside its CDB.
                "too short": srp_cmd(next(tags), inquiry)[:40],
            }
            for what, unit in malformed.items():
                tag, status, sense = srp_rsp(raw.send(unit))
                assert tag == struct.unpack(">Q", unit[8:16])[0], what
                assert status == 0x02, (what, status)
                assert (sense[2] & 0xF, sense[12], sense[13]) == invalid_field_in_iu, \
                    (what, sense.hex())
                inquiry_works()
            # A unit of no known type: no answer, and the channel goes on.
            assert raw.send(bytes([0x7F]) + bytes(63), ms=1000) == "TIMEOUT"
            inquiry_works()
            for function, code in ((0x01, 0), (0x99, 4)):
                tag = next(tags)
                unit = raw.send(srp_tsk_mgmt(tag, function, task_tag=0xDEAD))
                assert srp_rsp(unit)[:2] == (tag, 0), unit.hex()
                assert unit[18] & 0x1 and unit[36 + 3] == code, (function, unit.hex())
            inquiry_works()
            # Larger than the receive units the target posted.
            said = raw.send(srp_cmd(next(tags), inquiry) + bytes(max_it_iu_len), ms=10000)
            assert said == "DISCONNECTED" or said.startswith("SEND_ERROR"), said
        sessions = os.path.join(DRIVER, gid, "sessions")
        sessions_gone(sessions)
        assert os.listdir(sessions) == []
        # The target still logs a good initiator in.
        with RawSrp(ip, good) as raw:
            assert raw.outcome[0] == "ESTABLISHED", raw.outcome
        log = dmesg_since(mark)
        assert "malformed SRP_CMD" in log and "opcode Some(127) ignored" in log, log[-3000:]
    sh("rmmod", "scst_srpt")


def test_immediate_data_is_granted_and_checked(rdma_free):
    """Immediate data as ib_srp asks for it: granted at the offset the
    login names (past an SRP_CMD's fixed part) and only where asked; a
    write of 4 KiB or 8 KiB carried in its SRP_CMD reads back; one to a
    LUN that is not there is answered without its data. Refused with
    CHECK CONDITION INVALID FIELD IN INFORMATION UNIT, the blocks
    unchanged: stating more than the unit carries, a descriptor that runs
    into the data, and immediate data on a channel that did not ask for
    it. The channel survives each."""
    with raw_target("srpimm") as (ip, guid, gid):
        mark = "scst-test: srp immediate data"
        mark_dmesg(mark)
        tags = iter(range(100, 1000))
        invalid_field_in_iu = (0x05, 0x0E, 0x03)

        def read_back(raw, lba, length):
            tag = next(tags)
            cdb = rw10(0x28, lba, length // 512)
            unit = srp_cmd(tag, cdb, raw.direct(length), in_fmt=1, in_cnt=1)
            assert srp_rsp(raw.send(unit)) == (tag, 0, b"")
            return bytes.fromhex(raw.ask(f"data 0 {length}").split()[1])

        def attached(raw):
            """The new session's unit attentions (power on, reset) taken."""
            for _ in range(4):
                tag = next(tags)
                if srp_rsp(raw.send(srp_cmd(tag, bytes(6))))[1] == 0:
                    return raw
            raise AssertionError("TEST UNIT READY never succeeds")

        def refused(raw, unit):
            tag, status, sense = srp_rsp(raw.send(unit))
            assert tag == struct.unpack(">Q", unit[8:16])[0] and status == 0x02, status
            assert (sense[2] & 0xF, sense[12], sense[13]) == invalid_field_in_iu, sense.hex()

        asking = srp_login_req(guid, flags=IMMED_REQUESTED, imm_offset=IMM_OFFSET)
        with RawSrp(ip, asking) as raw:
            assert raw.outcome[0] == "ESTABLISHED", raw.outcome
            rsp = bytes.fromhex(raw.outcome[1])
            assert rsp[26] & LOGIN_RSP_IMMED_SUPP, rsp.hex()
            attached(raw)
            written = {}
            for lba, length in ((8, 4096), (64, 8192)):
                data = os.urandom(length)
                tag = next(tags)
                assert srp_rsp(raw.send(srp_immediate_write(tag, lba, data))) == (tag, 0, b"")
                assert read_back(raw, lba, length) == data
                written[lba] = data
            # More than the unit carries: nothing is written.
            refused(raw, srp_immediate_write(next(tags), 8, bytes(512) * 8, stated=8192))
            assert read_back(raw, 8, 4096) == written[8]
            # LUN 5 is not there: answered, its data not taken.
            tag = next(tags)
            _, status, sense = srp_rsp(raw.send(srp_immediate_write(tag, 8, bytes(4096), lun=5)))
            assert status == 0x02 and (sense[2] & 0xF, sense[12]) == (0x05, 0x25), sense.hex()
            assert read_back(raw, 8, 4096) == written[8]
        # At the end of the fixed part: granted, but an SRP_CMD's
        # descriptor then runs into its data.
        with RawSrp(ip, srp_login_req(guid, flags=IMMED_REQUESTED, imm_offset=48)) as raw:
            rsp = bytes.fromhex(raw.outcome[1])
            assert rsp[26] & LOGIN_RSP_IMMED_SUPP, rsp.hex()
            attached(raw)
            refused(raw, srp_immediate_write(next(tags), 8, bytes(4096), offset=48))
            assert read_back(raw, 8, 4096) == written[8]
        # Not asked for (or inside the fixed part): not granted, and
        # refused when used anyway.
        for login in (srp_login_req(guid), srp_login_req(guid, flags=IMMED_REQUESTED,
                                                         imm_offset=40)):
            with RawSrp(ip, login) as raw:
                rsp = bytes.fromhex(raw.outcome[1])
                assert raw.outcome[0] == "ESTABLISHED" and not rsp[26] & LOGIN_RSP_IMMED_SUPP
                attached(raw)
                refused(raw, srp_immediate_write(next(tags), 8, bytes(4096)))
                assert read_back(raw, 8, 4096) == written[8]
        # (The refusals' reasons are logged too, as far as the peer log's
        # rate limit lets them through.)
        log = dmesg_since(mark)
        assert "immediate data at 68)" in log and "ImmediateBeyondUnit" in log, log[-3000:]
    sh("rmmod", "scst_srpt")

# SPDX-License-Identifier: GPL-2.0
"""The reference tape handler (tools/scst_user, scst-user-tape) as the
kernel's st driver sees it through scst_local: mt-st, tar and dd on
/dev/nstN, checked against the data and against the cartridge file, which
the tests parse themselves."""

import hashlib
import os
import struct
import subprocess

import pytest

from conftest import (ROOT, TAPE, device_of, export_tape, fresh, iscsi_export, mt, not_busy,
                      open_iscsi_login, sh, sums_of, tree)

KIND_DATA = 0x4B4C4244
KIND_FILEMARK = 0x4B4D4646


def cartridge_records(path):
    """[(kind, length)] of a cartridge file, read without the handler."""
    out = []
    with open(path, "rb") as f:
        head = f.read(32)
        assert head[:16] == b"SCST-RS TAPE v1\0"
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            kind, length = struct.unpack("<II", h[:8])
            assert kind in (KIND_DATA, KIND_FILEMARK), hex(kind)
            out.append(("fm" if kind == KIND_FILEMARK else "data", length))
            f.seek(length, 1)
    return out


def raw_in(sg, n, *cdb):
    """The data-in of a raw CDB (hex byte strings) sent through sg."""
    r = subprocess.run(["sg_raw", "-b", "-r", str(n), sg, *cdb], capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def drive(handlers):  # noqa: F811 (the fixture imported above)
    def start(*args, name="vtape"):
        path = fresh(f"/tmp/{name}.cart")
        handlers(name, path, *args, binary=TAPE)
        nst, sg = export_tape(name)
        return nst, sg, path
    return start


def test_identity_and_status(drive):
    nst, sg, _ = drive()
    inq = sh("sg_inq", sg).stdout
    assert "VIRTUAL TAPE" in inq and "tape" in inq.lower(), inq
    assert read_type("vtape").startswith("1 - ")
    st = mt(nst, "status").stdout
    assert "File number=0, block number=0" in st, st
    assert "Tape block size 0 bytes" in st, st
    # READ BLOCK LIMITS as st saw it on open.
    lim = raw_in(sg, 6, "05", "00", "00", "00", "00", "00")
    assert lim == bytes([0, 0x10, 0, 0, 0, 1]), lim


def read_type(dev):
    with open(os.path.join(ROOT, "devices", dev, "type")) as f:
        return f.read()


def test_tar_two_files_mt_and_filemarks(drive):
    nst, _, cart = drive()
    a = tree("/tmp/tape-a", 1, 6)
    b = tree("/tmp/tape-b", 2, 4)
    sh("tar", "-cf", nst, "-C", "/tmp/tape-a", ".")
    sh("tar", "-cf", nst, "-C", "/tmp/tape-b", ".")
    st = mt(nst, "status").stdout
    assert "File number=2, block number=0" in st, st
    # The cartridge: two files of 10240-byte tar records, each closed by
    # the filemark st wrote on close.
    recs = cartridge_records(cart)
    marks = [i for i, r in enumerate(recs) if r[0] == "fm"]
    assert len(marks) == 2 and marks[1] == len(recs) - 1, recs
    assert all(r == ("data", 10240) for r in recs if r[0] == "data"), recs
    mt(nst, "rewind")
    assert "File number=0, block number=0" in mt(nst, "status").stdout
    for d in ("/tmp/tape-oa", "/tmp/tape-ob"):
        sh("rm", "-rf", d)
        os.makedirs(d)
    sh("tar", "-xf", nst, "-C", "/tmp/tape-oa")
    assert sums_of("/tmp/tape-oa") == a
    # BSD semantics: tar stopped inside file 0; fsf 1 goes to file 1.
    mt(nst, "fsf", "1")
    st = mt(nst, "status").stdout
    assert "File number=1, block number=0" in st, st
    # READ POSITION counts the blocks and the filemark before file 1.
    assert f"At block {marks[0] + 1}." in mt(nst, "tell").stdout
    sh("tar", "-xf", nst, "-C", "/tmp/tape-ob")
    assert sums_of("/tmp/tape-ob") == b
    # weof at the end of data: a third (empty) file.
    mt(nst, "rewind")
    mt(nst, "fsf", "2")
    mt(nst, "weof", "1")
    assert "File number=3" in mt(nst, "status").stdout
    assert [r[0] for r in cartridge_records(cart)].count("fm") == 3
    # Spacing past the end of data fails; the data before it stays.
    mt(nst, "rewind")
    mt(nst, "fsf", "3")
    assert mt(nst, "fsf", "1", check=False).returncode != 0
    mt(nst, "rewind")
    mt(nst, "fsf", "1")
    sh("rm", "-rf", "/tmp/tape-ob")
    os.makedirs("/tmp/tape-ob")
    sh("tar", "-xf", nst, "-C", "/tmp/tape-ob")
    assert sums_of("/tmp/tape-ob") == b


def test_fixed_block_mode(drive):
    nst, _, cart = drive()
    mt(nst, "setblk", "512")
    assert "Tape block size 512 bytes" in mt(nst, "status").stdout
    data = os.urandom(300 * 1024)
    with open("/tmp/tape-fixed.src", "wb") as f:
        f.write(data)
    sh("dd", "if=/tmp/tape-fixed.src", f"of={nst}", "conv=nocreat", "bs=4096", "status=none")
    recs = cartridge_records(cart)
    assert recs.count(("data", 512)) == len(data) // 512 and recs[-1] == ("fm", 0), recs[-3:]
    mt(nst, "rewind")
    out = subprocess.run(["dd", f"if={nst}", "bs=4096", "status=none"],
                         capture_output=True, timeout=300).stdout
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    # Back to variable blocks: one WRITE, one block.
    mt(nst, "setblk", "0")
    sh("dd", "if=/tmp/tape-fixed.src", f"of={nst}", "conv=nocreat",
       "bs=6000", "count=1", "status=none")
    assert ("data", 6000) in cartridge_records(cart)


def test_end_of_medium(drive):
    # 4 MiB of tape whose last 1 MiB is the early warning zone.
    nst, _, cart = drive("--capacity", "4M", "--early-warning", "1M")
    data = os.urandom(8 << 20)
    with open("/tmp/tape-eom.src", "wb") as f:
        f.write(data)
    w = subprocess.run(["dd", "if=/tmp/tape-eom.src", f"of={nst}", "conv=nocreat", "bs=64k"],
                       capture_output=True, text=True, timeout=600)
    assert w.returncode != 0 and "No space left on device" in w.stderr, w.stderr
    written = int(w.stderr.split("records out")[0].split("\n")[-1].split("+")[0]) * 65536
    # It stopped in the early warning zone, before the physical end.
    assert 3 << 20 <= written <= 4 << 20, w.stderr
    mt(nst, "rewind")
    out = subprocess.run(["dd", f"if={nst}", "bs=64k", "status=none"],
                         capture_output=True, timeout=300).stdout
    assert len(out) >= written
    assert out == data[:len(out)]
    assert sum(n for k, n in cartridge_records(cart) if k == "data") == len(out)


def test_load_unload_and_read_position(drive):
    nst, sg, _ = drive()
    sh("dd", "if=/dev/zero", f"of={nst}", "conv=nocreat", "bs=1k", "count=3", "status=none")
    # READ POSITION (short form) after the three blocks and the filemark.
    read_position = ["34"] + ["00"] * 9
    pos = raw_in(sg, 20, *read_position)
    assert pos[0] & 0x80 == 0 and struct.unpack(">II", pos[4:12]) == (4, 4), pos
    # UNLOAD: not ready, medium not present.
    sh("sg_raw", sg, "1b", "00", "00", "00", "00", "00")
    tur = sh("sg_turs", "-v", sg, check=False)
    assert tur.returncode != 0 and "not present" in (tur.stdout + tur.stderr).lower(), tur
    # LOAD: ready again at the beginning, after one unit attention.
    sh("sg_raw", sg, "1b", "00", "00", "00", "01", "00")
    first = sh("sg_turs", "-v", sg, check=False)
    assert "unit attention" in (first.stdout + first.stderr).lower(), first
    assert sh("sg_turs", sg, check=False).returncode == 0
    pos = raw_in(sg, 20, *read_position)
    assert pos[0] & 0x80 and struct.unpack(">II", pos[4:12]) == (0, 0), pos


def test_short_blocks_over_iscsi(handlers):  # noqa: F811 (the fixture imported above)
    """The tape through the iSCSI target and the kernel's initiator: a read
    larger than the block ends in CHECK CONDITION with ILI *and* the block's
    data, which must both reach st (Data-In, then a SCSI Response with the
    sense)."""
    iqn = "iqn.2026-11.org.scst-rs:tape"
    sh("modprobe", "st")
    handlers("vtape", fresh("/tmp/vtape-iscsi.cart"), binary=TAPE)
    with iscsi_export(iqn, "vtape"), open_iscsi_login(iqn) as scsi_devices:
        nst = device_of(scsi_devices, "scsi_tape/nst*[0-9]")
        assert nst, "no st device after login"
        # udev probes a new tape by opening it; st allows one opener.
        sh("udevadm", "settle", check=False)
        blocks = [os.urandom(1000), os.urandom(3000), os.urandom(70000)]
        fd = not_busy(lambda: os.open(nst, os.O_WRONLY))
        for b in blocks:
            assert os.write(fd, b) == len(b)
        os.close(fd)
        mt(nst, "rewind")
        # One 128 KiB read per block, until the filemark st wrote on
        # close (end of file): three short reads.
        r = not_busy(lambda: subprocess.run(["dd", f"if={nst}", "bs=128k"],
                                            capture_output=True, timeout=300))
        assert r.returncode == 0, r.stderr
        assert b"0+3 records in" in r.stderr, r.stderr
        assert r.stdout == b"".join(blocks)

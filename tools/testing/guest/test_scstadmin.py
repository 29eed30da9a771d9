# SPDX-License-Identifier: GPL-2.0
"""scstadmin against the running module: scst.conf applied, written back,
cleared and applied again; only differences written; a file that cannot
be applied changes nothing; the boot-time script restores a saved
configuration after the module is reloaded."""

import os
import re
import subprocess

import pytest

from conftest import (MODULE, REPO, ROOT, SCSTADMIN, backing_file, devices, host_of, load,
                      loaded, loop_device, read, scstadmin)

INIT_SCRIPT = os.path.join(REPO, "tools/scstadmin/init/scst")
UNIT = os.path.join(REPO, "tools/scstadmin/init/scst.service")
IQN = "iqn.2026-12.org.example:sa1"


def every_kind_conf(loop):
    """A configuration with every object kind scst-rs has, in SCST's
    grammar as an administrator writes it (comments, quotes, blocks)."""
    file1 = backing_file("sa-file1", 16 << 20)
    return f"""
# Every object kind.
HANDLER vdisk_fileio {{
	DEVICE file1 {{
		filename {file1}
		blocksize 4096
		nv_cache 1
		threads_num 4
		expl_alua 1
	}}
}}

HANDLER vdisk_blockio {{
	DEVICE blk1 {{
		filename {loop}
		rotational 1
	}}
}}

HANDLER vdisk_nullio {{
	DEVICE null1 {{
		size 2147483648
		thin_provisioned 1
		t10_dev_id nullid
		threads_pool_type per_initiator
	}}
}}

TARGET_DRIVER iscsi {{
	IncomingUser "disc disc-secret-12"
	enabled 1

	TARGET {IQN} {{
		HeaderDigest CRC32C
		QueuedCommands 64
		IncomingUser "joe joes-secret-12"
		OutgoingUser "tgt tgts-secret-123"
		allowed_portal 127.0.0.*
		rel_tgt_id 5
		LUN 0 file1
		LUN 1 null1 {{
			read_only 1
		}}
		GROUP hosts {{
			LUN 0 blk1
			INITIATOR iqn.1994-05.com.example:h*
		}}
		enabled 1
	}}
}}

TARGET_DRIVER scst_local {{
	TARGET local1 {{
		session_name host1
		LUN 0 null1
		LUN 3 file1
	}}
}}

DEVICE_GROUP dg1 {{
	DEVICE file1
	DEVICE null1

	TARGET_GROUP here {{
		group_id 17
		preferred 1
		state active
		TARGET {IQN}
	}}
	TARGET_GROUP there {{
		group_id 18
		state standby
		TARGET iqn.2026-12.org.example:node2 {{
			rel_tgt_id 9
		}}
	}}
}}
"""


@pytest.fixture
def loop():
    with loop_device("sa-loop", 32 << 20) as dev:
        yield dev


def write_file(name, text):
    path = f"/tmp/{name}"
    with open(path, "w") as f:
        f.write(text)
    return path


def saved(name="saved.conf"):
    path = f"/tmp/{name}"
    scstadmin("-write_config", path)
    with open(path) as f:
        return f.read()


def test_round_trip_of_every_object_kind(scst, loop):
    conf = write_file("every.conf", every_kind_conf(loop))
    r = scstadmin("-config", conf)
    assert "write(s) applied" in r.stdout
    # The objects, as the kernel shows them.
    assert read("devices/file1/blocksize") == "4096\n[key]\n"
    assert read("devices/file1/threads_num") == "4\n[key]\n"
    assert read("devices/null1/size") == f"{2 << 30}\n[key]\n"
    assert read("devices/null1/threads_pool_type") == "per_initiator\n[key]\n"
    assert read("devices/blk1/filename") == f"{loop}\n[key]\n"
    t = f"targets/iscsi/{IQN}"
    assert read(f"{t}/HeaderDigest") == "CRC32C\n[key]\n"
    assert read(f"{t}/rel_tgt_id") == "5\n[key]\n"
    assert read(f"{t}/IncomingUser") == "joe joes-secret-12\n"
    assert read(f"{t}/luns/1/read_only") == "1\n[key]\n"
    assert os.path.basename(os.readlink(os.path.join(ROOT, t, "ini_groups/hosts/luns/0/device"))) == "blk1"
    assert os.path.exists(os.path.join(ROOT, t, "ini_groups/hosts/initiators/iqn.1994-05.com.example:h*"))
    assert read(f"{t}/enabled") == "1\n" and read("targets/iscsi/enabled") == "1\n"
    # scst_local's session is a SCSI host with both LUNs.
    host = host_of("local1", "host1")
    assert devices(host, 0) and devices(host, 3)
    # ALUA.
    dg = "device_groups/dg1"
    assert sorted(os.listdir(os.path.join(ROOT, dg, "devices"))) == ["file1", "mgmt", "null1"]
    assert read(f"{dg}/target_groups/here/group_id") == "17\n[key]\n"
    assert read(f"{dg}/target_groups/here/preferred") == "1\n[key]\n"
    assert read(f"{dg}/target_groups/there/state") == "standby\n[key]\n"
    assert os.path.islink(os.path.join(ROOT, dg, "target_groups/here", IQN))
    assert read(f"{dg}/target_groups/there/iqn.2026-12.org.example:node2/rel_tgt_id") == "9\n[key]\n"
    assert read("devices/file1/expl_alua") == "1\n[key]\n"

    first = saved("first.conf")
    assert os.stat("/tmp/first.conf").st_mode & 0o777 == 0o600, "CHAP secrets stay root's"
    assert f"\t\tfilename {loop}\n" in first and "\t\tsession_name host1\n" in first
    assert "\tIncomingUser \"disc disc-secret-12\"\n" in first
    # Applied to the system it came from, it writes nothing.
    assert "already matches" in scstadmin("-config", "/tmp/first.conf", "-force", "-noprompt").stdout

    scstadmin("-clear_config", "-force", "-noprompt")
    assert os.listdir(os.path.join(ROOT, "devices")) == []
    assert os.listdir(os.path.join(ROOT, "device_groups")) == ["mgmt"]
    assert not [d for d in os.listdir(os.path.join(ROOT, "targets/iscsi"))
                if os.path.isdir(os.path.join(ROOT, "targets/iscsi", d))]
    assert read("targets/iscsi/IncomingUser") == "" and read("targets/iscsi/enabled") == "0\n"

    scstadmin("-config", "/tmp/first.conf")
    assert saved("second.conf") == first, "write, clear, apply restores an identical tree"
    assert devices(host_of("local1", "host1"), 3)


def test_only_the_difference_is_written(scst, loop):
    conf = every_kind_conf(loop)
    scstadmin("-config", write_file("base.conf", conf))
    changed = conf.replace("threads_num 4", "threads_num 2").replace(
        "\t\tLUN 3 file1\n", "\t\tLUN 3 file1\n\t\tLUN 5 blk1\n")
    path = write_file("changed.conf", changed)
    check = scstadmin("-check_config", path).stdout
    writes = [line for line in check.splitlines() if line.startswith("echo ")]
    assert writes == [f"echo '2' > {ROOT}/devices/file1/threads_num",
                      f"echo 'add blk1 5' > {ROOT}/targets/scst_local/local1/luns/mgmt"], check
    assert read("devices/file1/threads_num") == "4\n[key]\n", "-check_config changes nothing"
    assert "2 write(s) applied" in scstadmin("-config", path).stdout
    assert read("devices/file1/threads_num") == "2\n[key]\n"
    assert devices(host_of("local1", "host1"), 5), "the new LUN reached the SCSI layer"
    # Without -force what the file lacks stays; with it, it goes.
    scstadmin("-config", write_file("base.conf", conf))
    assert os.path.exists(os.path.join(ROOT, "targets/scst_local/local1/luns/5"))
    scstadmin("-config", "/tmp/base.conf", "-force", "-noprompt")
    assert not os.path.exists(os.path.join(ROOT, "targets/scst_local/local1/luns/5"))


def test_a_file_that_cannot_be_applied_changes_nothing(scst, loop):
    conf = every_kind_conf(loop)
    scstadmin("-config", write_file("base.conf", conf))
    before = saved()
    # Refused while planning: every problem named with its line.
    bad = conf.replace("\t\tnv_cache 1\n", "\t\tnv_cache 1\n\t\tcolour blue\n").replace(
        "\t\tLUN 3 file1\n", "\t\tLUN 3 file1\n\t\tLUN 4 nosuchdev\n")
    r = scstadmin("-config", write_file("bad.conf", bad), check=False)
    assert r.returncode != 0
    assert "line 8: device attribute 'colour'" in r.stderr, r.stderr
    assert re.search(r"line \d+: LUN 4: no device nosuchdev", r.stderr), r.stderr
    assert "nothing was changed" in r.stderr
    assert saved() == before
    # Refused by the kernel in the middle (the backing file does not
    # exist): what was written before is undone.
    broken = conf.replace(
        "HANDLER vdisk_blockio {\n",
        "HANDLER vdisk_nullio {\n\tDEVICE null2\n}\n\n"
        "HANDLER vdisk_blockio {\n\tDEVICE gone {\n\t\tfilename /tmp/no/such/file\n\t}\n"
    ).replace("threads_num 4", "threads_num 3")
    r = scstadmin("-config", write_file("broken.conf", broken), check=False)
    assert r.returncode != 0
    assert "add_device gone" in r.stderr and "No such file" in r.stderr, r.stderr
    assert "were undone" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(ROOT, "devices/null2"))
    assert saved() == before
    assert read("devices/file1/threads_num") == "4\n[key]\n"


def test_boot_script_restores_a_saved_configuration(scst, loop):
    scstadmin("-config", write_file("boot-base.conf", every_kind_conf(loop)))
    env = dict(os.environ, SCST_CONF="/tmp/boot.conf", SCST_MODULE=MODULE,
               SCSTADMIN=SCSTADMIN)
    # The unit runs the init script, which is what runs here.
    with open(UNIT) as f:
        unit = f.read()
    assert "ExecStart=/etc/init.d/scst start" in unit and "ExecStop=/etc/init.d/scst stop" in unit

    def init(*args):
        r = subprocess.run([INIT_SCRIPT, *args], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    init("save")
    with open("/tmp/boot.conf") as f:
        saved_text = f.read()
    init("stop")
    assert not loaded()
    init("start")
    assert loaded()
    assert saved() == saved_text
    assert devices(host_of("local1", "host1"), 3)
    assert "scst is loaded" in init("status").stdout
    init("reload")  # nothing changed: applies nothing
    init("stop")
    assert not loaded()
    load()  # for the fixture's teardown


def test_single_object_commands(scst):
    path = backing_file("sa-one", 8 << 20)
    scstadmin("-open_dev", "one", "-handler", "vdisk_fileio", "-attributes", f"filename={path},blocksize=4096")
    assert read("devices/one/blocksize") == "4096\n[key]\n"
    scstadmin("-set_dev_attr", "one", "-attributes", "threads_num=3")
    assert read("devices/one/threads_num") == "3\n[key]\n"
    scstadmin("-add_target", "lt", "-driver", "scst_local")
    scstadmin("-add_lun", "0", "-driver", "scst_local", "-target", "lt", "-device", "one",
              "-attributes", "read_only=1")
    scstadmin("-add_group", "g", "-driver", "scst_local", "-target", "lt")
    scstadmin("-add_init", "host9", "-driver", "scst_local", "-target", "lt", "-group", "g")
    assert "one" in scstadmin("-list_device").stdout
    assert "lt" in scstadmin("-list_target", "-driver", "scst_local").stdout
    assert "host9" in scstadmin("-list_group", "-driver", "scst_local", "-target", "lt").stdout
    attrs = scstadmin("-list_dev_attr", "one").stdout
    assert re.search(r"threads_num\s+3\s+Yes", attrs), attrs
    # A refused command says why (last_sysfs_mgmt_res).
    r = scstadmin("-add_lun", "0", "-driver", "scst_local", "-target", "lt", "-device", "one", check=False)
    assert r.returncode != 0 and "File exists" in r.stderr, r.stderr
    r = scstadmin("-set_dev_attr", "one", "-attributes", "threads_num=0", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    # Removing asks first unless -noprompt.
    r = scstadmin("-rem_target", "lt", "-driver", "scst_local", check=False)
    assert r.returncode != 0 and "-noprompt" in r.stderr
    scstadmin("-rem_lun", "0", "-driver", "scst_local", "-target", "lt")
    scstadmin("-rem_target", "lt", "-driver", "scst_local", "-noprompt")
    scstadmin("-close_dev", "one", "-handler", "vdisk_fileio", "-noprompt")
    assert os.listdir(os.path.join(ROOT, "devices")) == []
    r = scstadmin("-bogus", check=False)
    assert r.returncode == 2 and "unknown option" in r.stderr
    assert "-write_config" in scstadmin("-help").stdout

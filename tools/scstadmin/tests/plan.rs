// SPDX-License-Identifier: GPL-2.0

//! Reading a running system (a tree shaped as scst-rs's sysfs, in a
//! temporary directory) and the writes that turn it into a file's
//! configuration.

use scstadmin::config::Config;
use scstadmin::plan::{clear, plan, Step};
use scstadmin::sysfs::{help_list, help_list_attrs, help_params, split_value, Sysfs, System};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const FILEIO_HELP: &str = "Usage: echo \"add_device device_name filename=PATH [parameters]\" >mgmt\n       echo \"del_device device_name\" >mgmt\n\nThe following parameters available: filename, blocksize, read_only,\nnv_cache, o_direct, write_through, rotational, thin_provisioned, t10_dev_id\n";
const NULLIO_HELP: &str = "Usage: echo \"add_device device_name [parameters]\" >mgmt\n       echo \"del_device device_name\" >mgmt\n\nThe following parameters available: size, size_mb, blocksize, read_only,\nrotational, thin_provisioned, t10_dev_id\n";
const ISCSI_HELP: &str = "Usage: echo \"add_target target_name\" >mgmt\n       echo \"del_target target_name\" >mgmt\n       echo \"add_target_attribute target_name <IncomingUser|OutgoingUser> name secret\" >mgmt\n       echo \"del_target_attribute target_name <IncomingUser|OutgoingUser> name\" >mgmt\n       echo \"add_target_attribute target_name allowed_portal pattern\" >mgmt\n       echo \"del_target_attribute target_name allowed_portal pattern\" >mgmt\n       echo \"add_attribute <IncomingUser|OutgoingUser> name secret\" >mgmt\n       echo \"del_attribute <IncomingUser|OutgoingUser> name\" >mgmt\n       echo \"add_attribute portal address[:port]\" >mgmt\n       echo \"del_attribute portal address[:port]\" >mgmt\n\nThe following target attributes available: HeaderDigest, QueuedCommands, IncomingUser, OutgoingUser, allowed_portal\n";
const LOCAL_HELP: &str = "Usage: echo \"add_target target_name [session_name=sess_name]\" >mgmt\n       echo \"del_target target_name\" >mgmt\n       echo \"add_session target_name session_name\" >mgmt\n       echo \"del_session target_name session_name\" >mgmt\n";
const LUNS_HELP: &str = "Usage: echo \"add VNAME lun [parameters]\" >mgmt\n\nThe following parameters available: read_only.\n";
const USER_HELP: &str =
    "This handler's device is registered and removed by its process through /dev/scst_user.\n";

/// A directory shaped as `/sys/kernel/scst_tgt`, removed when dropped.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Tree {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scstadmin-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let t = Tree(dir);
        t.file("version", "0.1.0", false);
        t.file("last_sysfs_mgmt_res", "0", false);
        t.file("handlers/vdisk_fileio/mgmt", FILEIO_HELP, true);
        t.file("handlers/vdisk_nullio/mgmt", NULLIO_HELP, true);
        t.file("targets/iscsi/mgmt", ISCSI_HELP, true);
        t.file("targets/iscsi/enabled", "1", true);
        t.file("targets/iscsi/portal", "0.0.0.0:3260\n[::]:3260", false);
        t.file("targets/iscsi/IncomingUser", "", false);
        t.file("targets/iscsi/OutgoingUser", "", false);
        t.file("targets/scst_local/mgmt", LOCAL_HELP, true);
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn file(&self, rel: &str, text: &str, writable: bool) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("{text}\n")).unwrap();
        let mode = if writable { 0o644 } else { 0o444 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn link(&self, rel: &str, to: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(self.path(to), p).unwrap();
    }

    /// A device as the kernel shows it; `attrs` are (name, value, key).
    fn device(&self, handler: &str, name: &str, attrs: &[(&str, &str, bool)]) {
        let dir = format!("devices/{name}");
        self.link(&format!("handlers/{handler}/{name}"), &dir);
        self.link(&format!("{dir}/handler"), &format!("handlers/{handler}"));
        self.file(
            &format!("{dir}/type"),
            "0 - Direct-access device (e.g., disk)",
            false,
        );
        for (n, v, w) in [
            ("threads_num", "8", true),
            ("threads_pool_type", "shared", true),
            ("max_tgt_dev_commands", "64", true),
        ] {
            if !attrs.iter().any(|a| a.0 == n) {
                self.file(&format!("{dir}/{n}"), v, w);
            }
        }
        for (n, v, key) in attrs {
            let writable = matches!(
                *n,
                "threads_num" | "threads_pool_type" | "max_tgt_dev_commands" | "size" | "size_mb"
            );
            let text = if *key {
                format!("{v}\n[key]")
            } else {
                v.to_string()
            };
            self.file(&format!("{dir}/{n}"), &text, writable);
        }
        fs::create_dir_all(self.path(&format!("{dir}/exported"))).unwrap();
    }

    fn target(&self, driver: &str, name: &str, enabled: bool, rel_tgt_id: u16) {
        let dir = format!("targets/{driver}/{name}");
        self.file(
            &format!("{dir}/enabled"),
            if enabled { "1" } else { "0" },
            true,
        );
        self.file(
            &format!("{dir}/rel_tgt_id"),
            &format!("{rel_tgt_id}\n[key]"),
            true,
        );
        self.file(&format!("{dir}/luns/mgmt"), LUNS_HELP, true);
        self.file(&format!("{dir}/ini_groups/mgmt"), "Usage", true);
        fs::create_dir_all(self.path(&format!("{dir}/sessions"))).unwrap();
        if driver == "iscsi" {
            self.file(&format!("{dir}/HeaderDigest"), "None", true);
            self.file(&format!("{dir}/QueuedCommands"), "32", true);
            self.file(&format!("{dir}/IncomingUser"), "", false);
            self.file(&format!("{dir}/allowed_portal"), "", false);
        }
    }

    fn lun(&self, table: &str, n: u64, device: &str, read_only: bool) {
        let dir = format!("{table}/luns/{n}");
        self.link(&format!("{dir}/device"), &format!("devices/{device}"));
        self.file(
            &format!("{dir}/read_only"),
            if read_only { "1\n[key]" } else { "0" },
            false,
        );
    }

    fn group(&self, target: &str, name: &str, initiators: &[&str]) -> String {
        let dir = format!("{target}/ini_groups/{name}");
        self.file(&format!("{dir}/luns/mgmt"), LUNS_HELP, true);
        self.file(&format!("{dir}/initiators/mgmt"), "Usage", true);
        for i in initiators {
            self.file(&format!("{dir}/initiators/{i}"), i, false);
        }
        dir
    }

    fn system(&self) -> System {
        Sysfs::new(&self.0).system().expect("reads the tree")
    }
}

/// The running system of most tests: two devices, an iSCSI target with
/// two LUNs and a group, a scst_local target with a session.
fn running() -> Tree {
    let t = Tree::new();
    t.device(
        "vdisk_fileio",
        "disk1",
        &[
            ("filename", "/srv/disk1.img", true),
            ("blocksize", "512", false),
            ("read_only", "0", false),
        ],
    );
    t.device(
        "vdisk_nullio",
        "null1",
        &[
            ("size", "1073741824", true),
            ("blocksize", "4096", true),
            ("threads_num", "4", true),
        ],
    );
    t.target("iscsi", "iqn.2026-12.org.example:t1", true, 1);
    let tgt = "targets/iscsi/iqn.2026-12.org.example:t1";
    t.file(&format!("{tgt}/HeaderDigest"), "CRC32C\n[key]", true);
    t.file(&format!("{tgt}/IncomingUser"), "joe joes-secret-12", false);
    t.lun(tgt, 0, "disk1", false);
    t.lun(tgt, 1, "null1", true);
    let g = t.group(tgt, "g1", &["iqn.1991-05.com.example:a"]);
    t.lun(&g, 0, "null1", false);
    t.target("scst_local", "local1", true, 2);
    fs::create_dir_all(t.path("targets/scst_local/local1/sessions/host1")).unwrap();
    t.lun("targets/scst_local/local1", 0, "disk1", false);
    t
}

fn texts(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| format!("{} < {}", s.path, s.text))
        .collect()
}

#[test]
fn help_texts_describe_what_a_handler_and_driver_take() {
    assert_eq!(help_params(FILEIO_HELP)[0], "filename");
    assert_eq!(help_params(FILEIO_HELP).len(), 9);
    assert_eq!(help_params(LUNS_HELP), ["read_only"]);
    assert!(help_params(USER_HELP).is_empty());
    assert_eq!(
        help_list_attrs(ISCSI_HELP, "add_attribute"),
        ["IncomingUser", "OutgoingUser", "portal"]
    );
    assert_eq!(
        help_list_attrs(ISCSI_HELP, "add_target_attribute"),
        ["IncomingUser", "OutgoingUser", "allowed_portal"]
    );
    assert!(help_list_attrs(LOCAL_HELP, "add_attribute").is_empty());
    assert_eq!(
        help_list(ISCSI_HELP, "The following target attributes available:"),
        [
            "HeaderDigest",
            "QueuedCommands",
            "IncomingUser",
            "OutgoingUser",
            "allowed_portal"
        ]
    );
    assert_eq!(split_value("4096\n[key]\n"), ("4096".to_string(), true));
    assert_eq!(split_value("a\nb\n"), ("a\nb".to_string(), false));
}

#[test]
fn the_running_system_reads_as_its_configuration() {
    let t = running();
    let sys = t.system();
    let text = sys.config.to_text();
    let expected = "\
# scst.conf written by scstadmin (scst-rs)

HANDLER vdisk_fileio {
\tDEVICE disk1 {
\t\tfilename /srv/disk1.img
\t}
}

HANDLER vdisk_nullio {
\tDEVICE null1 {
\t\tblocksize 4096
\t\tsize 1073741824
\t\tthreads_num 4
\t}
}

TARGET_DRIVER iscsi {
\tportal 0.0.0.0:3260
\tportal [::]:3260
\tenabled 1

\tTARGET iqn.2026-12.org.example:t1 {
\t\tHeaderDigest CRC32C
\t\tIncomingUser \"joe joes-secret-12\"
\t\trel_tgt_id 1
\t\tenabled 1

\t\tLUN 0 disk1
\t\tLUN 1 null1 {
\t\t\tread_only 1
\t\t}

\t\tGROUP g1 {
\t\t\tLUN 0 null1

\t\t\tINITIATOR iqn.1991-05.com.example:a
\t\t}
\t}
}

TARGET_DRIVER scst_local {

\tTARGET local1 {
\t\trel_tgt_id 2
\t\tsession_name host1
\t\tenabled 1

\t\tLUN 0 disk1
\t}
}
";
    assert_eq!(text, expected);
    // Applied to the system it came from, it writes nothing, with or
    // without force.
    let again = Config::parse(&text).unwrap();
    assert_eq!(
        texts(&plan(&sys, &again, false).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        texts(&plan(&sys, &again, true).unwrap()),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_difference_is_written() {
    let t = running();
    let sys = t.system();
    let mut c = Config::parse(&sys.config.to_text()).unwrap();
    let text = sys.config.to_text()
        .replace("\t\tthreads_num 4\n", "\t\tthreads_num 2\n")
        .replace("\t\tLUN 0 disk1\n\t\tLUN 1", "\t\tLUN 0 disk1\n\t\tLUN 2 disk2\n\t\tLUN 1")
        .replace("HANDLER vdisk_nullio {", "HANDLER vdisk_fileio {\n\tDEVICE disk2 {\n\t\tfilename /srv/disk2.img\n\t\tthreads_pool_type per_initiator\n\t}\n}\n\nHANDLER vdisk_nullio {")
        .replace("\t\t\tINITIATOR iqn.1991-05.com.example:a\n", "\t\t\tINITIATOR iqn.1991-05.com.example:a\n\t\t\tINITIATOR iqn.1991-05.com.example:b\n")
        .replace("\t\tHeaderDigest CRC32C\n", "\t\tHeaderDigest CRC32C\n\t\tQueuedCommands 64\n");
    c = Config::parse(&text).unwrap_or(c);
    let steps = texts(&plan(&sys, &c, false).unwrap());
    let t1 = "targets/iscsi/iqn.2026-12.org.example:t1";
    assert_eq!(
        steps,
        [
            "handlers/vdisk_fileio/mgmt < add_device disk2 filename=/srv/disk2.img".to_string(),
            "devices/disk2/threads_pool_type < per_initiator".into(),
            "devices/null1/threads_num < 2".into(),
            format!("{t1}/QueuedCommands < 64"),
            format!("{t1}/luns/mgmt < add disk2 2"),
            format!("{t1}/ini_groups/g1/initiators/mgmt < add iqn.1991-05.com.example:b"),
        ]
    );
}

#[test]
fn without_force_nothing_is_removed_with_force_everything_extra_is() {
    let t = running();
    let sys = t.system();
    let c = Config::parse(
        "HANDLER vdisk_fileio {\n\tDEVICE disk1 {\n\t\tfilename /srv/disk1.img\n\t}\n}\n\
         TARGET_DRIVER iscsi {\n\tenabled 1\n\tTARGET iqn.2026-12.org.example:t1 {\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}\n}\n",
    )
    .unwrap();
    assert_eq!(texts(&plan(&sys, &c, false).unwrap()), Vec::<String>::new());
    let t1 = "targets/iscsi/iqn.2026-12.org.example:t1";
    assert_eq!(
        texts(&plan(&sys, &c, true).unwrap()),
        [
            "targets/iscsi/mgmt < del_target_attribute iqn.2026-12.org.example:t1 IncomingUser joe"
                .to_string(),
            format!("{t1}/luns/mgmt < del 1"),
            format!("{t1}/ini_groups/mgmt < del g1"),
            "targets/scst_local/mgmt < del_target local1".into(),
            "handlers/vdisk_nullio/mgmt < del_device null1".into(),
            // HeaderDigest and rel_tgt_id are not in the file, but only
            // objects and lists are removed: attributes keep their values.
        ]
    );
}

#[test]
fn clearing_removes_every_object_and_keeps_the_portals() {
    let t = running();
    let sys = t.system();
    let steps = texts(&clear(&sys));
    assert_eq!(
        steps,
        [
            "targets/iscsi/enabled < 0",
            "targets/iscsi/mgmt < del_target iqn.2026-12.org.example:t1",
            "targets/scst_local/mgmt < del_target local1",
            "handlers/vdisk_fileio/mgmt < del_device disk1",
            "handlers/vdisk_nullio/mgmt < del_device null1",
        ]
    );
}

#[test]
fn a_file_that_cannot_be_applied_names_every_problem_and_writes_nothing() {
    let t = running();
    let sys = t.system();
    let c = Config::parse(
        "HANDLER vdisk_fileio {\n\
         \tDEVICE disk9 {\n\t\tfilename /srv/disk9.img\n\t\tcolour blue\n\t}\n\
         }\n\
         HANDLER dev_disk {\n\tDEVICE 1:0:0:0\n}\n\
         TARGET_DRIVER iscsi {\n\tTARGET t {\n\t\tLUN 0 nosuchdev\n\t\tLUN 1 disk1 {\n\t\t\tcolour red\n\t\t}\n\t}\n}\n\
         TARGET_DRIVER ib_srpt {\n}\n\
         setup_id 0x1234\n",
    )
    .unwrap();
    let errors = plan(&sys, &c, false).unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 7, 12, 14, 18, 20], "{errors:#?}");
    assert!(errors[0].reason.contains("colour") && errors[0].reason.contains("filename"));
    assert!(errors[1].reason.contains("no handler 'dev_disk'"));
    assert!(errors[2].reason.contains("nosuchdev"));
    assert!(errors[4].reason.contains("ib_srpt"));
    assert!(errors[5].reason.contains("setup_id"));
}

#[test]
fn a_fixed_attribute_that_differs_needs_force_to_re_create_the_device() {
    let t = running();
    let sys = t.system();
    let c = Config::parse(
        "HANDLER vdisk_fileio {\n\tDEVICE disk1 {\n\t\tfilename /srv/other.img\n\t}\n}\n",
    )
    .unwrap();
    let e = plan(&sys, &c, false).unwrap_err();
    assert_eq!(e[0].line, 2);
    assert!(
        e[0].reason.contains("filename") && e[0].reason.contains("-force"),
        "{}",
        e[0]
    );
    // A default given explicitly is no difference.
    let same = Config::parse("HANDLER vdisk_fileio {\n\tDEVICE disk1 {\n\t\tfilename /srv/disk1.img\n\t\tblocksize 512\n\t}\n}\n").unwrap();
    assert_eq!(
        texts(&plan(&sys, &same, false).unwrap()),
        Vec::<String>::new()
    );
    // With force: re-created, and its LUNs (which the kernel drops with it)
    // mapped again.
    let text = sys
        .config
        .to_text()
        .replace("/srv/disk1.img", "/srv/other.img");
    let c = Config::parse(&text).expect(&text);
    let steps = texts(&plan(&sys, &c, true).unwrap());
    assert_eq!(
        steps,
        [
            "handlers/vdisk_fileio/mgmt < del_device disk1",
            "handlers/vdisk_fileio/mgmt < add_device disk1 filename=/srv/other.img",
            "targets/iscsi/iqn.2026-12.org.example:t1/luns/mgmt < add disk1 0",
            "targets/scst_local/local1/luns/mgmt < add disk1 0",
        ]
    );
}

#[test]
fn an_initiator_moves_between_groups() {
    let t = running();
    let tgt = "targets/iscsi/iqn.2026-12.org.example:t1";
    t.group(tgt, "g2", &[]);
    let sys = t.system();
    let text = sys.config.to_text().replace(
        "\t\tGROUP g2 {\n\t\t}\n",
        "\t\tGROUP g2 {\n\t\t\tINITIATOR iqn.1991-05.com.example:a\n\t\t}\n",
    );
    let text = text.replace(
        "\t\t\tLUN 0 null1\n\n\t\t\tINITIATOR iqn.1991-05.com.example:a\n",
        "\t\t\tLUN 0 null1\n",
    );
    let c = Config::parse(&text).unwrap();
    let expected = [format!(
        "{tgt}/ini_groups/g1/initiators/mgmt < move iqn.1991-05.com.example:a g2"
    )];
    assert_eq!(texts(&plan(&sys, &c, false).unwrap()), expected);
    assert_eq!(texts(&plan(&sys, &c, true).unwrap()), expected);
}

#[test]
fn devices_of_user_space_handlers_are_references() {
    let t = running();
    t.file("handlers/vtape/mgmt", USER_HELP, false);
    t.device("vtape", "vtape", &[]);
    let sys = t.system();
    let text = sys.config.to_text();
    assert!(
        text.contains("HANDLER vtape {\n\tDEVICE vtape\n}\n"),
        "{text}"
    );
    // Cleared, the device stays: its program owns it.
    let steps = texts(&clear(&sys));
    assert!(!steps.iter().any(|s| s.contains("vtape")), "{steps:?}");
    // A file naming a user device that is not registered is refused.
    let c = Config::parse("HANDLER vtape {\n\tDEVICE vtape2\n}\n").unwrap();
    let e = plan(&sys, &c, false).unwrap_err();
    assert!(
        e[0].line == 2 && e[0].reason.contains("start the handler"),
        "{e:?}"
    );
}

#[test]
fn unreadable_trees_say_so() {
    let e = Sysfs::new(Path::new("/nonexistent/scst_tgt"))
        .system()
        .unwrap_err();
    assert!(e.to_string().contains("scst.ko"), "{e}");
}

#[test]
fn a_new_target_s_attributes_are_checked_against_the_driver_s_list() {
    let t = Tree::new();
    t.device("vdisk_nullio", "n", &[]);
    let sys = t.system();
    let c = Config::parse(
        "TARGET_DRIVER iscsi {\n\tTARGET iqn.x:new {\n\t\tHeaderDigest CRC32C\n\t\tLUN 0 n\n\t\tenabled 1\n\t}\n}\n",
    )
    .unwrap();
    assert_eq!(
        texts(&plan(&sys, &c, false).unwrap()),
        [
            "targets/iscsi/mgmt < add_target iqn.x:new",
            "targets/iscsi/iqn.x:new/HeaderDigest < CRC32C",
            "targets/iscsi/iqn.x:new/luns/mgmt < add n 0",
            "targets/iscsi/iqn.x:new/enabled < 1",
        ]
    );
    let c = Config::parse(
        "TARGET_DRIVER iscsi {\n\tTARGET iqn.x:new {\n\t\tDataDigestt CRC32C\n\t}\n}\n",
    )
    .unwrap();
    let e = plan(&sys, &c, false).unwrap_err();
    assert!(
        e[0].line == 3 && e[0].reason.contains("DataDigestt"),
        "{e:?}"
    );
}

#[test]
fn force_leaves_unnamed_attributes_and_enabled_alone() {
    let t = running();
    let sys = t.system();
    // The file names every object but no `enabled`: with force nothing is
    // disabled (a target made from the file would have the driver's
    // default, which a running one may differ from).
    let c = Config::parse(
        &sys.config
            .to_text()
            .replace("\t\tenabled 1\n", "")
            .replace("\tenabled 1\n", ""),
    )
    .unwrap();
    assert_eq!(texts(&plan(&sys, &c, true).unwrap()), Vec::<String>::new());
}

/// A device group as the kernel shows it: disk1 in dg1, whose target
/// group tg1 (group 1, active) holds the iSCSI target, and tg2 (group 2,
/// standby) another node's port 7.
fn with_device_group() -> Tree {
    let t = running();
    let dg = "device_groups/dg1";
    t.file("device_groups/mgmt", "Usage", true);
    t.file(&format!("{dg}/devices/mgmt"), "Usage", true);
    t.link(&format!("{dg}/devices/disk1"), "devices/disk1");
    t.file(&format!("{dg}/target_groups/mgmt"), "Usage", true);
    for (tg, id, state) in [("tg1", "1", "active"), ("tg2", "2", "standby")] {
        let dir = format!("{dg}/target_groups/{tg}");
        t.file(&format!("{dir}/mgmt"), "Usage", true);
        t.file(&format!("{dir}/group_id"), &format!("{id}\n[key]"), true);
        t.file(&format!("{dir}/state"), &format!("{state}\n[key]"), true);
        t.file(&format!("{dir}/preferred"), "0", true);
    }
    t.link(
        &format!("{dg}/target_groups/tg1/iqn.2026-12.org.example:t1"),
        "targets/iscsi/iqn.2026-12.org.example:t1",
    );
    t.file(
        &format!("{dg}/target_groups/tg2/node2/rel_tgt_id"),
        "7\n[key]",
        true,
    );
    t
}

#[test]
fn device_groups_read_back_and_apply_as_differences() {
    let t = with_device_group();
    let sys = t.system();
    let text = sys.config.to_text();
    assert!(
        text.contains(
            "DEVICE_GROUP dg1 {\n\tDEVICE disk1\n\n\tTARGET_GROUP tg1 {\n\t\tgroup_id 1\n\t\tstate active\n\t\tTARGET iqn.2026-12.org.example:t1\n\t}\n\n\tTARGET_GROUP tg2 {\n\t\tgroup_id 2\n\t\tstate standby\n\t\tTARGET node2 {\n\t\t\trel_tgt_id 7\n\t\t}\n\t}\n}\n"
        ),
        "{text}"
    );
    let same = Config::parse(&text).unwrap();
    assert_eq!(
        texts(&plan(&sys, &same, true).unwrap()),
        Vec::<String>::new()
    );

    let dg = "device_groups/dg1";
    let changed = Config::parse(
        &(text
            .replace("\t\tstate standby\n", "\t\tpreferred 1\n\t\tstate active\n")
            .replace("rel_tgt_id 7", "rel_tgt_id 9")
            .replace("\tDEVICE disk1\n", "\tDEVICE disk1\n\tDEVICE null1\n")
            + "\nDEVICE_GROUP dg2 {\n\tTARGET_GROUP a {\n\t\tgroup_id 5\n\t\tTARGET local1\n\t}\n}\n"),
    )
    .unwrap();
    assert_eq!(
        texts(&plan(&sys, &changed, false).unwrap()),
        [
            format!("{dg}/devices/mgmt < add null1"),
            format!("{dg}/target_groups/tg2/preferred < 1"),
            format!("{dg}/target_groups/tg2/state < active"),
            format!("{dg}/target_groups/tg2/node2/rel_tgt_id < 9"),
            "device_groups/mgmt < create dg2".into(),
            "device_groups/dg2/target_groups/mgmt < create a".into(),
            "device_groups/dg2/target_groups/a/group_id < 5".into(),
            "device_groups/dg2/target_groups/a/mgmt < add local1".into(),
        ]
    );

    // With force, what the file lacks goes; clearing removes the group.
    let fewer = Config::parse(&text.replace("\t\tTARGET node2 {\n\t\t\trel_tgt_id 7\n\t\t}\n", ""))
        .unwrap();
    assert_eq!(
        texts(&plan(&sys, &fewer, true).unwrap()),
        [format!("{dg}/target_groups/tg2/mgmt < del node2")]
    );
    assert!(texts(&clear(&sys)).contains(&"device_groups/mgmt < del dg1".to_string()));

    // What cannot be applied is named before anything is written.
    let bad = Config::parse(
        "DEVICE_GROUP dg3 {\n\tDEVICE nosuch\n\tDEVICE disk1\n\tTARGET_GROUP x {\n\t\tstate sleepy\n\t}\n}\n",
    )
    .unwrap();
    let errors = plan(&sys, &bad, false).unwrap_err();
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 5]);
}

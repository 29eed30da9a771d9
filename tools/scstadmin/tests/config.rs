// SPDX-License-Identifier: GPL-2.0

//! scst.conf: SCST's grammar read and written back.

use scstadmin::config::{Config, ConfigError};

/// A configuration in SCST 3.x's documented form, with the constructs its
/// users write: comments, quoted values, blocks opened on the next line,
/// empty blocks, attribute blocks on LUNs.
const SCST_EXAMPLE: &str = r#"
# Global attributes first.
HANDLER vdisk_fileio {
	DEVICE disk01 {
		filename /srv/disk01.img   # the backing file
		nv_cache 1
	}
	DEVICE disk02
	{
		filename "/srv/disk 02.img"
		blocksize 4096
	}
}

HANDLER vdisk_nullio {
	DEVICE null1 {}
}

TARGET_DRIVER iscsi {
	enabled 1
	IncomingUser "disc discsecret12"

	TARGET iqn.2026-12.org.example:tgt1 {
		IncomingUser "joe 12charsecret"
		IncomingUser "ann other-secret"
		HeaderDigest CRC32C,None
		LUN 0 disk01
		LUN 1 disk02 {
			read_only 1
		}

		GROUP win {
			LUN 0 null1
			INITIATOR iqn.1991-05.com.microsoft:win1
			INITIATOR iqn.1991-05.com.microsoft:*
		}
		enabled 1
	}
}

TARGET_DRIVER scst_local {
	TARGET local1 {
		session_name host1
		LUN 0 null1
	}
}

DEVICE_GROUP dg1 {
	DEVICE disk01
	DEVICE disk02

	TARGET_GROUP local {
		group_id 256
		preferred 1
		state active
		TARGET iqn.2026-12.org.example:tgt1
	}
	TARGET_GROUP remote {
		group_id 257
		state standby
		TARGET iqn.2026-12.org.example:node2 {
			rel_tgt_id 2
		}
	}
}
"#;

#[test]
fn reads_scst_s_grammar() {
    let c = Config::parse(SCST_EXAMPLE).expect("parses");
    assert_eq!(c.handlers.len(), 2);
    let (h, d) = c.device("disk02").expect("disk02");
    assert_eq!(h.name, "vdisk_fileio");
    assert_eq!(d.attrs[0].name, "filename");
    assert_eq!(d.attrs[0].value, "/srv/disk 02.img");
    assert_eq!(d.attrs[1].value, "4096");
    let (_, d1) = c.device("disk01").unwrap();
    assert_eq!(d1.attrs.len(), 2, "the comment is not a value");
    assert_eq!(d1.attrs[0].line, 5);
    assert!(c.device("null1").unwrap().1.attrs.is_empty());

    let iscsi = &c.drivers[0];
    assert_eq!(iscsi.name, "iscsi");
    assert_eq!(iscsi.attrs[1].value, "disc discsecret12");
    let t = &iscsi.targets[0];
    let users: Vec<&str> = t
        .attrs
        .iter()
        .filter(|a| a.name == "IncomingUser")
        .map(|a| a.value.as_str())
        .collect();
    assert_eq!(users, ["joe 12charsecret", "ann other-secret"]);
    assert_eq!(t.luns.len(), 2);
    assert_eq!(t.luns[1].device, "disk02");
    assert_eq!(t.luns[1].attrs[0].name, "read_only");
    assert_eq!(t.groups[0].luns[0].device, "null1");
    assert_eq!(
        t.groups[0].initiators[1].name,
        "iqn.1991-05.com.microsoft:*"
    );
    let local = &c.drivers[1].targets[0];
    assert_eq!(local.attrs[0].name, "session_name");

    let dg = &c.device_groups[0];
    assert_eq!(dg.devices.len(), 2);
    assert_eq!(dg.target_groups[0].attrs.len(), 3);
    assert_eq!(dg.target_groups[1].attrs[1].value, "standby");
    let port = &dg.target_groups[1].ports[0];
    assert_eq!(
        (port.name.as_str(), port.attrs[0].value.as_str()),
        ("iqn.2026-12.org.example:node2", "2")
    );
}

#[test]
fn written_text_reads_back_the_same() {
    let c = Config::parse(SCST_EXAMPLE).unwrap();
    let text = c.to_text();
    let again = Config::parse(&text).expect("its own output parses");
    let strip = |mut c: Config| {
        // Line numbers differ; nothing else may.
        for h in &mut c.handlers {
            h.line = 0;
            for d in &mut h.devices {
                d.line = 0;
                d.attrs.iter_mut().for_each(|a| a.line = 0);
            }
        }
        for d in &mut c.drivers {
            d.line = 0;
            d.attrs.iter_mut().for_each(|a| a.line = 0);
            for t in &mut d.targets {
                t.line = 0;
                t.attrs.iter_mut().for_each(|a| a.line = 0);
                for l in t
                    .luns
                    .iter_mut()
                    .chain(t.groups.iter_mut().flat_map(|g| g.luns.iter_mut()))
                {
                    l.line = 0;
                    l.attrs.iter_mut().for_each(|a| a.line = 0);
                }
                for g in &mut t.groups {
                    g.line = 0;
                    g.initiators.iter_mut().for_each(|i| i.line = 0);
                }
            }
        }
        for g in &mut c.device_groups {
            g.line = 0;
            g.devices.iter_mut().for_each(|d| d.line = 0);
            for tg in &mut g.target_groups {
                tg.line = 0;
                tg.attrs.iter_mut().for_each(|a| a.line = 0);
                for p in &mut tg.ports {
                    p.line = 0;
                    p.attrs.iter_mut().for_each(|a| a.line = 0);
                }
            }
        }
        c
    };
    assert_eq!(strip(again), strip(c));
    assert!(
        text.contains("\t\tfilename \"/srv/disk 02.img\"\n"),
        "{text}"
    );
    assert!(
        text.contains("\t\tLUN 1 disk02 {\n\t\t\tread_only 1\n\t\t}\n"),
        "{text}"
    );
    assert!(text.contains("\tDEVICE null1\n"), "{text}");
}

fn errors(text: &str) -> Vec<ConfigError> {
    Config::parse(text).expect_err("refused")
}

fn lines(text: &str) -> Vec<usize> {
    errors(text).iter().map(|e| e.line).collect()
}

#[test]
fn malformed_files_are_refused_with_line_numbers() {
    assert_eq!(
        lines("HANDLER vdisk_fileio {\n\tDEVICE d1 {\n\t\tfilename /x\n\t}\n"),
        [1]
    );
    assert_eq!(lines("HANDLER h {\n}\n}\n"), [3]);
    assert_eq!(
        lines("HANDLER h {\n\tDEVICE d {\n\t\tfilename \"/x\n\t}\n}\n"),
        [3]
    );
    let e = errors(
        "TARGET_DRIVER iscsi {\n\tTARGET t {\n\t\tLUN x d1\n\t\tLUN 0\n\t\tLUN 16384 d1\n\t}\n}\n",
    );
    assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(e[0].reason.contains("not a number"), "{}", e[0]);
    assert_eq!(e[0].to_string(), format!("line 3: {}", e[0].reason));
    // Duplicates, with the first occurrence named.
    let e = errors("TARGET_DRIVER d {\n\tTARGET t {\n\t\tLUN 0 a\n\t\tLUN 0 b\n\t}\n}\n");
    assert!(e[0].line == 4 && e[0].reason.contains("line 3"), "{:?}", e);
    assert_eq!(
        lines("HANDLER a {\n\tDEVICE x\n}\nHANDLER b {\n\tDEVICE x\n}\n"),
        [5]
    );
    let e = errors("TARGET_DRIVER d {\n\tTARGET t {\n\t\tGROUP a {\n\t\t\tINITIATOR i\n\t\t}\n\t\tGROUP b {\n\t\t\tINITIATOR i\n\t\t}\n\t}\n}\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 7);
    // Keywords out of place, attributes without values, ALUA.
    assert_eq!(lines("DEVICE d1\n"), [1]);
    assert_eq!(lines("HANDLER h {\n\tTARGET t\n}\n"), [2]);
    assert_eq!(
        lines("HANDLER h {\n\tDEVICE d {\n\t\tfilename\n\t}\n}\n"),
        [3]
    );
    // ALUA: what device groups, target groups and their ports may hold.
    assert_eq!(
        lines("DEVICE_GROUP dg {\n\tfoo 1\n\tTARGET_GROUP tg {\n\t\tbar 2\n\t\tTARGET t {\n\t\t\tbaz 3\n\t\t}\n\t\tTARGET t\n\t}\n\tLUN 0 x\n}\n"),
        [2, 4, 6, 8, 10]
    );
    assert_eq!(
        lines("DEVICE_GROUP a {\n\tDEVICE d\n}\nDEVICE_GROUP b {\n\tDEVICE d\n}\nDEVICE_GROUP a {\n}\n"),
        [5, 7]
    );
    // Every error of a well-formed file at once; a syntax error alone.
    assert_eq!(
        lines("FOO x\nHANDLER h {\n\tBAR y\n}\nTARGET_DRIVER d {\n\tLUN 0 x\n}\n"),
        [1, 3, 6]
    );
    assert_eq!(lines("FOO x\nHANDLER h {\n}\n{\n"), [4]);
}

#[test]
fn a_handler_named_twice_is_one_handler() {
    let c = Config::parse("HANDLER h {\n\tDEVICE a\n}\nHANDLER h {\n\tDEVICE b\n}\n").unwrap();
    assert_eq!(c.handlers.len(), 1);
    assert_eq!(c.handlers[0].devices.len(), 2);
}

/// The examples the documentation shows must be files scstadmin takes.
#[test]
fn documented_examples_parse() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```\nHANDLER").expect("the README's example") + 4;
    let end = start + readme[start..].find("```").unwrap();
    let c = Config::parse(&readme[start..end]).expect("the README's scst.conf");
    assert_eq!(
        c.device("disk1").unwrap().1.attrs[0].value,
        "/srv/disk1.img"
    );
    let t = &c.drivers[0].targets[0];
    assert_eq!((t.luns[0].number, t.attrs[0].value.as_str()), (0, "host1"));

    let doc = include_str!("../../../Documentation/scstadmin.rst");
    let start = doc
        .find("    HANDLER vdisk_fileio {")
        .expect("the admin page's example");
    let end = start + doc[start..].find("\nthen ").unwrap();
    let c = Config::parse(&doc[start..end]).expect("the admin page's scst.conf");
    let t = &c.drivers[0].targets[0];
    assert_eq!(t.name, "iqn.2026-12.org.example:disk1");
    assert_eq!(t.attrs[0].name, "enabled");

    let doc = include_str!("../../../Documentation/alua.rst");
    let start = doc
        .find("    DEVICE_GROUP dg1 {")
        .expect("the ALUA page's example");
    let end = start + doc[start..].find("\n\n- ").unwrap();
    let c = Config::parse(&doc[start..end]).expect("the ALUA page's scst.conf");
    assert_eq!(
        c.device_groups[0].target_groups[1].ports[0].attrs[0].value,
        "2"
    );
}

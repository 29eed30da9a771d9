// SPDX-License-Identifier: GPL-2.0

use scst_host_tests::mgmt::*;

#[test]
fn verb_words_and_params() {
    let mut line = Line::parse(b"add_device disk1 filename=/srv/a.img; blocksize=4096\n").unwrap();
    assert_eq!(line.verb(), "add_device");
    assert_eq!(line.name("device name").unwrap(), "disk1");
    let params: Vec<_> = line.params().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        params,
        vec![
            Param {
                key: "filename",
                value: "/srv/a.img"
            },
            Param {
                key: "blocksize",
                value: "4096"
            },
        ]
    );
    line.end().unwrap();
}

#[test]
fn whitespace_and_trailing_semicolons_are_tolerated() {
    let mut line = Line::parse(b"  add_device   d   size=1M ;  ; read_only = 1 ;  ").unwrap();
    assert_eq!(line.name("name").unwrap(), "d");
    let params: Vec<_> = line.params().collect::<Result<_, _>>().unwrap();
    assert_eq!(params.len(), 2);
    assert_eq!(
        params[1],
        Param {
            key: "read_only",
            value: "1"
        }
    );
}

#[test]
fn refuses_empty_and_non_text() {
    assert_eq!(Line::parse(b"").unwrap_err(), MgmtError::Empty);
    assert_eq!(Line::parse(b"   \n").unwrap_err(), MgmtError::Empty);
    assert_eq!(Line::parse(b"add\xff").unwrap_err(), MgmtError::NotText);
    assert_eq!(
        Line::parse(b"add a\nadd b").unwrap_err(),
        MgmtError::NotText
    );
    assert_eq!(Line::parse(b"add\0a").unwrap_err(), MgmtError::NotText);
    let long = vec![b'a'; MAX_LINE_LEN + 1];
    assert_eq!(Line::parse(&long).unwrap_err(), MgmtError::NotText);
}

#[test]
fn missing_and_trailing_words() {
    let mut line = Line::parse(b"del_device").unwrap();
    assert_eq!(
        line.name("device name").unwrap_err(),
        MgmtError::Missing("device name")
    );
    let mut line = Line::parse(b"del_device a b").unwrap();
    line.name("device name").unwrap();
    assert_eq!(line.end().unwrap_err(), MgmtError::Trailing("b"));
}

#[test]
fn names() {
    for good in ["disk1", "iqn.2006-10.net.vlnb:tgt", "a", "x_y-z.0"] {
        check_name(good).unwrap();
    }
    let long = "n".repeat(MAX_NAME_LEN + 1);
    for bad in ["", ".", "..", "a/b", "a;b", "a=b", "é", long.as_str()] {
        assert_eq!(
            check_name(bad).unwrap_err(),
            MgmtError::BadName(bad),
            "{bad}"
        );
    }
}

#[test]
fn bad_params() {
    let mut line = Line::parse(b"add_device d size").unwrap();
    line.name("n").unwrap();
    assert_eq!(
        line.params().next().unwrap().unwrap_err(),
        MgmtError::BadParam("size")
    );
    let mut line = Line::parse(b"add_device d =5").unwrap();
    line.name("n").unwrap();
    assert_eq!(
        line.params().next().unwrap().unwrap_err(),
        MgmtError::BadParam("=5")
    );
    let mut line = Line::parse(b"add_device d size=").unwrap();
    line.name("n").unwrap();
    assert_eq!(
        line.params().next().unwrap().unwrap_err(),
        MgmtError::BadParam("size=")
    );
}

#[test]
fn collect_params_checks_keys() {
    const KEYS: [&str; 2] = ["size", "blocksize"];
    let mut line = Line::parse(b"x size=1; blocksize=512").unwrap();
    let mut values = [None; 2];
    collect_params(line.params(), &KEYS, &mut values).unwrap();
    assert_eq!(values, [Some("1"), Some("512")]);

    let mut line = Line::parse(b"x size=1; colour=red").unwrap();
    let mut values = [None; 2];
    assert_eq!(
        collect_params(line.params(), &KEYS, &mut values).unwrap_err(),
        MgmtError::UnknownParam("colour")
    );

    let mut line = Line::parse(b"x size=1; size=2").unwrap();
    let mut values = [None; 2];
    assert_eq!(
        collect_params(line.params(), &KEYS, &mut values).unwrap_err(),
        MgmtError::DuplicateParam("size")
    );
}

#[test]
fn numbers_and_sizes() {
    assert_eq!(parse_u64("0"), Some(0));
    assert_eq!(parse_u64("0x1F"), Some(31));
    assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
    for bad in ["", "-1", "+1", "1.5", "0x", "18446744073709551616", " 1"] {
        assert_eq!(parse_u64(bad), None, "{bad}");
    }
    assert_eq!(parse_size("k", "4096"), Ok(4096));
    assert_eq!(parse_size("k", "2K"), Ok(2048));
    assert_eq!(parse_size("k", "1g"), Ok(1 << 30));
    assert_eq!(parse_size("k", "3T"), Ok(3 << 40));
    assert!(parse_size("k", "99999999999T").is_err());
    assert!(parse_size("k", "M").is_err());
    assert_eq!(parse_bool("ro", "1"), Ok(true));
    assert!(parse_bool("ro", "yes").is_err());
    assert_eq!(parse_ranged("bs", "4096", 512, 4096), Ok(4096));
    assert!(parse_ranged("bs", "8192", 512, 4096).is_err());
}

#[test]
fn errors_explain_themselves() {
    let e = MgmtError::BadValue {
        key: "blocksize",
        value: "7",
        expected: "512 or 4096",
    };
    assert_eq!(
        e.to_string(),
        "invalid value '7' for 'blocksize': expected 512 or 4096"
    );
    assert_eq!(
        MgmtError::UnknownCommand("frob").to_string(),
        "unknown command 'frob'"
    );
}

#[test]
fn initiator_wildcards() {
    use scst_host_tests::mgmt::wildcard_match as m;
    assert!(m(
        "iqn.1994-05.com.redhat:abc",
        "iqn.1994-05.com.redhat:abc"
    ));
    assert!(!m(
        "iqn.1994-05.com.redhat:abc",
        "iqn.1994-05.com.redhat:abd"
    ));
    assert!(m("iqn.*", "iqn.1994-05.com.redhat:abc"));
    assert!(m("*:ab?", "iqn.1994-05.com.redhat:abc"));
    assert!(!m("*:ab?", "iqn.1994-05.com.redhat:abcd"));
    assert!(m("*", ""));
    assert!(m("a*b*c", "aXbYbZc"));
    assert!(!m("a*b*c", "aXbYbZ"));
    assert!(m("!host1", "host2"));
    assert!(!m("!host*", "host2"));
    // Many stars against a long name stays fast.
    let long = "a".repeat(4000);
    assert!(!m("*a*a*a*a*a*a*a*a*b", &long));
}

#[test]
fn errno_names() {
    use scst_host_tests::mgmt::errno_name;
    assert_eq!(errno_name(-2), Some("ENOENT"));
    assert_eq!(errno_name(16), Some("EBUSY"));
    assert_eq!(errno_name(-4095), None);
}

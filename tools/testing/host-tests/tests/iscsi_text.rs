// SPDX-License-Identifier: GPL-2.0

//! iSCSI text: parsing `key=value` entries and their values, writing them,
//! and the SendTargets writer.

mod iscsi_support;

use iscsi_support::XorShift;
use scst_host_tests::scst_iscsi::text::*;

type Entry = Result<(Vec<u8>, Vec<u8>), TextError>;

fn collect(text: &[u8]) -> Vec<Entry> {
    pairs(text)
        .map(|p| p.map(|p| (p.key.to_vec(), p.value.to_vec())))
        .collect()
}

#[test]
fn parses_entries_in_order() {
    let got = collect(b"A=1\0Empty=\0X-y.z=a=b\0");
    assert_eq!(
        got,
        vec![
            Ok((b"A".to_vec(), b"1".to_vec())),
            Ok((b"Empty".to_vec(), b"".to_vec())),
            // Only the first `=` separates.
            Ok((b"X-y.z".to_vec(), b"a=b".to_vec())),
        ]
    );
    assert_eq!(validate(b"A=1\0B=2\0"), Ok(2));
    assert_eq!(validate(b""), Ok(0));
    assert_eq!(find(b"A=1\0B=2\0", b"B"), Some(&b"2"[..]));
    assert_eq!(find(b"A=1\0B=2\0", b"b"), None);
}

#[test]
fn empty_entries_are_skipped() {
    assert_eq!(validate(b"\0A=1\0\0\0B=2\0\0"), Ok(2));
    assert_eq!(validate(b"\0\0"), Ok(0));
}

#[test]
fn malformed_entries() {
    let k63 = format!("{}=v\0", "k".repeat(63));
    let k64 = format!("{}=v\0", "k".repeat(64));
    let v8192 = format!("K={}\0", "v".repeat(8192));
    let v8193 = format!("K={}\0", "v".repeat(8193));
    assert_eq!(validate(k63.as_bytes()), Ok(1));
    assert_eq!(validate(v8192.as_bytes()), Ok(1));
    let cases: &[(&[u8], TextError)] = &[
        (b"A=1", TextError::Unterminated),
        (b"A=1\0B", TextError::Unterminated),
        (b"A\0", TextError::NoEquals),
        (b"=1\0", TextError::EmptyKey),
        (k64.as_bytes(), TextError::KeyTooLong),
        (b"A B=1\0", TextError::BadKey),
        (b"A\xff=1\0", TextError::BadKey),
        (b"A:B=1\0", TextError::BadKey),
        (v8193.as_bytes(), TextError::ValueTooLong),
    ];
    for (text, err) in cases {
        assert_eq!(
            validate(text),
            Err(*err),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    // All allowed key bytes.
    assert_eq!(validate(b"aZ09.-+@_#=1\0"), Ok(1));
    // Iteration ends at the first error.
    let got = collect(b"A=1\0bad\0C=3\0");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], Err(TextError::NoEquals));
    // Values may hold any byte but NUL.
    assert_eq!(validate(b"A=\xff\xfe\x01 =,\0"), Ok(1));
}

#[test]
fn numbers() {
    let cases: &[(&[u8], Option<u64>)] = &[
        (b"0", Some(0)),
        (b"8192", Some(8192)),
        (b"007", Some(7)),
        (b"18446744073709551615", Some(u64::MAX)),
        (b"18446744073709551616", None),
        (b"0x0", Some(0)),
        (b"0x1f", Some(31)),
        (b"0X1F", Some(31)),
        (b"0xffffffffffffffff", Some(u64::MAX)),
        (b"0x000000ffffffffffffffff", Some(u64::MAX)),
        (b"0x1ffffffffffffffff", None),
        (b"0x", None),
        (b"0xg", None),
        (b"0bAQ==", Some(1)),
        (b"0bAQ", Some(1)),
        (b"0BAAEAAA==", Some(65536)),
        (b"0b//////////8=", Some(u64::MAX)),
        // Nine bytes.
        (b"0b////////////", None),
        (b"0b", None),
        (b"", None),
        (b"-1", None),
        (b"+1", None),
        (b"1.5", None),
        (b" 1", None),
    ];
    for (value, want) in cases {
        assert_eq!(
            parse_number(value),
            *want,
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
    assert_eq!(parse_in_range(b"512", 512, 1024), Some(512));
    assert_eq!(parse_in_range(b"1024", 512, 1024), Some(1024));
    assert_eq!(parse_in_range(b"511", 512, 1024), None);
    assert_eq!(parse_in_range(b"1025", 512, 1024), None);
    assert_eq!(parse_in_range(b"4294967296", 0, u32::MAX), None);
}

#[test]
fn booleans_lists_and_extension_keys() {
    assert_eq!(parse_bool(b"Yes"), Some(true));
    assert_eq!(parse_bool(b"No"), Some(false));
    assert_eq!(parse_bool(b"yes"), None);
    assert_eq!(parse_bool(b""), None);
    let items: Vec<&[u8]> = list_items(b"CRC32C,None").collect();
    assert_eq!(items, vec![&b"CRC32C"[..], b"None"]);
    assert_eq!(list_items(b"").count(), 1);
    assert_eq!(list_items(b"a,,b").count(), 3);
    assert!(is_extension_key(b"X-com.example.key"));
    assert!(is_extension_key(b"X#NodeArchitecture"));
    assert!(!is_extension_key(b"Xfoo"));
    assert!(!is_extension_key(b"X"));
    assert!(names_equal(
        b"iqn.2024-01.ORG.example:A",
        b"iqn.2024-01.org.example:a"
    ));
    assert!(!names_equal(b"iqn.a", b"iqn.b"));
}

#[test]
fn binary_values() {
    let mut out = [0u8; 8];
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"0x00ff10", Some(&[0x00, 0xff, 0x10])),
        (b"0XABcd", Some(&[0xab, 0xcd])),
        // Odd count: a leading zero is implied.
        (b"0xabc", Some(&[0x0a, 0xbc])),
        (b"0x1", Some(&[0x01])),
        (b"0x", None),
        (b"0xzz", None),
        (b"0x0102030405060708", Some(&[1, 2, 3, 4, 5, 6, 7, 8])),
        // Nine bytes do not fit.
        (b"0x010203040506070809", None),
        (b"0bAQID", Some(&[1, 2, 3])),
        (b"0bAQI=", Some(&[1, 2])),
        (b"0bAQI", Some(&[1, 2])),
        (b"0bAQ==", Some(&[1])),
        (b"0B+/8=", Some(&[0xfb, 0xff])),
        (b"0bA", None),
        (b"0bAQ===", None),
        (b"0bA*==", None),
        (b"0b", None),
        (b"0b==", None),
        (b"1234", None),
        (b"", None),
    ];
    for (value, want) in cases {
        let got = decode_binary(value, &mut out).map(|n| out[..n].to_vec());
        assert_eq!(
            got.as_deref(),
            *want,
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn writer_writes_whole_entries() {
    let mut buf = [0u8; 64];
    let mut w = TextWriter::new(&mut buf);
    assert!(w.is_empty());
    w.pair(b"A", b"1").unwrap();
    w.pair_number(b"N", 0).unwrap();
    w.pair_number(b"M", 4_294_967_296).unwrap();
    w.pair_bool(b"B", true).unwrap();
    w.pair_bool(b"C", false).unwrap();
    w.pair_hex(b"H", &[0x0f, 0xa0]).unwrap();
    w.pair_fmt(b"F", format_args!("{}:{},{}", "10.0.0.1", 3260, 1))
        .unwrap();
    assert_eq!(
        w.as_bytes(),
        b"A=1\0N=0\0M=4294967296\0B=Yes\0C=No\0H=0x0fa0\0F=10.0.0.1:3260,1\0"
    );
    let len = w.len();
    // Does not fit: nothing of it stays.
    assert_eq!(w.pair(b"Long", &[b'v'; 64]), Err(WriteError));
    assert_eq!(
        w.pair_fmt(b"Long", format_args!("{}", "v".repeat(64))),
        Err(WriteError)
    );
    assert_eq!(w.pair_hex(b"Long", &[0; 64]), Err(WriteError));
    assert_eq!(w.len(), len);
    // NUL in a key or value is refused.
    assert_eq!(w.pair(b"Z", b"a\0b"), Err(WriteError));
    assert_eq!(w.pair(b"Z\0", b"a"), Err(WriteError));
    assert_eq!(w.len(), len);
    w.truncate(4);
    assert_eq!(w.as_bytes(), b"A=1\0");
    w.truncate(100);
    assert_eq!(w.len(), 4);
    // Exactly full.
    let mut buf = [0u8; 4];
    let mut w = TextWriter::new(&mut buf);
    w.pair(b"A", b"1").unwrap();
    assert_eq!(w.pair(b"", b""), Err(WriteError));
    let mut buf = [0u8; 0];
    assert_eq!(
        TextWriter::new(&mut buf).pair_number(b"N", u64::MAX),
        Err(WriteError)
    );
}

#[test]
fn written_text_parses_back() {
    let mut rng = XorShift(42);
    let mut buf = vec![0u8; 4096];
    for _ in 0..200 {
        let mut w = TextWriter::new(&mut buf);
        let mut want = Vec::new();
        for i in 0..rng.below(20) {
            let key = format!("K{i}");
            let mut value = vec![0u8; rng.below(30) as usize];
            rng.fill(&mut value);
            for b in &mut value {
                *b = (*b).max(1);
            }
            w.pair(key.as_bytes(), &value).unwrap();
            want.push(Ok((key.into_bytes(), value)));
        }
        let len = w.len();
        assert_eq!(collect(&buf[..len]), want);
    }
}

#[test]
fn iscsi_names() {
    let name = IscsiName::new(b"iqn.2024-01.org.example:x").unwrap();
    assert_eq!(name.as_bytes(), b"iqn.2024-01.org.example:x");
    assert!(!name.is_empty());
    assert!(IscsiName::EMPTY.is_empty());
    assert!(IscsiName::new(&[b'a'; MAX_NAME_LEN]).is_some());
    assert!(IscsiName::new(&[b'a'; MAX_NAME_LEN + 1]).is_none());
    assert_eq!(name, IscsiName::new(b"iqn.2024-01.org.example:x").unwrap());
    assert!(name == b"iqn.2024-01.org.example:x"[..]);
    assert_eq!(format!("{name:?}"), "\"iqn.2024-01.org.example:x\"");
    assert_eq!(format!("{:?}", IscsiName::new(b"\xff").unwrap()), "[255]");
}

struct Source;

impl TargetCatalog for Source {
    fn send_targets(&self, _initiator: &[u8], w: &mut SendTargetsWriter<'_, '_>) {
        w.target(b"iqn.t:one");
        w.address(b"192.0.2.1:3260,1");
        w.address_fmt(format_args!("[{}]:{},{}", "2001:db8::1", 3260, 1));
        w.target(b"iqn.t:two");
        w.address(b"192.0.2.2:3260,2");
    }
}

fn run(query: SendTargetsQuery<'_>, room: usize) -> (Vec<u8>, bool) {
    let mut buf = vec![0u8; room];
    let mut w = TextWriter::new(&mut buf);
    let mut st = SendTargetsWriter::new(&mut w, query);
    Source.send_targets(b"iqn.i", &mut st);
    let truncated = st.truncated();
    (w.as_bytes().to_vec(), truncated)
}

#[test]
fn send_targets_writer() {
    let all = b"TargetName=iqn.t:one\0TargetAddress=192.0.2.1:3260,1\0\
TargetAddress=[2001:db8::1]:3260,1\0TargetName=iqn.t:two\0TargetAddress=192.0.2.2:3260,2\0";
    assert_eq!(run(SendTargetsQuery::All, 1024), (all.to_vec(), false));
    assert_eq!(
        run(SendTargetsQuery::Target(b"IQN.T:TWO"), 1024),
        (
            b"TargetName=iqn.t:two\0TargetAddress=192.0.2.2:3260,2\0".to_vec(),
            false
        )
    );
    assert_eq!(
        run(SendTargetsQuery::Target(b"iqn.t:none"), 1024),
        (Vec::new(), false)
    );
    // Room for the first target only; the second is dropped whole.
    let first = 21 + 31 + 35;
    assert_eq!(
        run(SendTargetsQuery::All, first + 30),
        (all[..first].to_vec(), true)
    );
    // Not even the first target's last address fits.
    assert_eq!(run(SendTargetsQuery::All, first - 1), (Vec::new(), true));
    assert_eq!(run(SendTargetsQuery::All, 0), (Vec::new(), true));

    // An address before any target is ignored.
    let mut buf = [0u8; 128];
    let mut w = TextWriter::new(&mut buf);
    let mut st = SendTargetsWriter::new(&mut w, SendTargetsQuery::All);
    st.address(b"192.0.2.9:3260,1");
    assert!(!st.truncated());
    assert!(w.is_empty());
}

#[test]
fn pseudo_random_text_never_panics() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    let alphabet = b"=\0Xx-#0bB1f+/aQ,";
    let mut out = [0u8; 64];
    for round in 0..5000 {
        let mut text = vec![0u8; rng.below(300) as usize];
        if round % 2 == 0 {
            rng.fill(&mut text);
        } else {
            for b in &mut text {
                *b = alphabet[rng.below(alphabet.len() as u64) as usize];
            }
        }
        let _ = validate(&text);
        let _ = find(&text, b"X");
        for p in pairs(&text).map_while(Result::ok) {
            assert!(p.key.len() <= MAX_KEY_LEN && !p.key.is_empty());
            assert!(!p.key.contains(&0) && !p.value.contains(&0));
            let _ = parse_number(p.value);
            let _ = parse_bool(p.value);
            let _ = list_items(p.value).count();
            if let Some(n) = decode_binary(p.value, &mut out) {
                assert!(n <= out.len());
            }
        }
        let _ = parse_number(&text);
        let _ = decode_binary(&text, &mut out);
        let _ = decode_binary(&text, &mut []);
    }
}

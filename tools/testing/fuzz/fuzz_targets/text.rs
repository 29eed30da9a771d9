// SPDX-License-Identifier: GPL-2.0

//! iSCSI text: the key/value parser, the value readers and writers checked
//! against reference implementations on arbitrary bytes, then a
//! `TextNegotiation` of the full feature phase driven through up to 16 Text
//! Requests. Input: a session byte (see `text_config`), selectors of the
//! storage and response buffer sizes, the transmit cap and the session's
//! MaxXmitDataSegmentLength, a byte for the parser checks, then per request
//! a step byte, optional ITT/TTT and a data segment (16-bit length, bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use scst_fuzz::text_config::*;
use scst_fuzz::*;
use scst_host_tests::scst_iscsi::chap::{choose_algorithm, constant_time_eq};
use scst_host_tests::scst_iscsi::login::*;
use scst_host_tests::scst_iscsi::pdu::RejectReason;
use scst_host_tests::scst_iscsi::text::*;

// ---------------------------------------------------------------------------
// Parser and value properties.

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b".-+@_#".contains(&b)
}

/// An entry as `(key, value)`.
type Entry<'a> = Result<(&'a [u8], &'a [u8]), TextError>;

/// `pairs` against a reference walk of the same text.
fn reference_pairs(t: &[u8]) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            out.push(Err(TextError::Unterminated));
            break;
        };
        let entry = &rest[..nul];
        rest = &rest[nul + 1..];
        if entry.is_empty() {
            continue;
        }
        let parsed = match entry.iter().position(|&b| b == b'=') {
            None => Err(TextError::NoEquals),
            Some(0) => Err(TextError::EmptyKey),
            Some(eq) if eq > MAX_KEY_LEN => Err(TextError::KeyTooLong),
            Some(eq) if !entry[..eq].iter().all(|&b| is_key_byte(b)) => Err(TextError::BadKey),
            Some(eq) if entry.len() - eq - 1 > MAX_LARGE_VALUE_LEN => Err(TextError::ValueTooLong),
            Some(eq) => Ok((&entry[..eq], &entry[eq + 1..])),
        };
        let failed = parsed.is_err();
        out.push(parsed);
        if failed {
            break;
        }
    }
    out
}

fn parse_properties(t: &[u8], aux: u8) {
    let got: Vec<_> = pairs(t).map(|p| p.map(|p| (p.key, p.value))).collect();
    assert_eq!(got, reference_pairs(t));
    let ok: Vec<_> = got.iter().map_while(|p| p.ok()).collect();
    match validate(t) {
        Ok(n) => assert!(n == got.len() && n == ok.len()),
        Err(e) => assert_eq!(got.last(), Some(&Err(e))),
    }
    if let Some(&(k, v)) = ok.first() {
        assert_eq!(find(t, k), Some(v));
    }

    // Writing the entries back gives the same text, less empty entries.
    let mut want = Vec::new();
    for (k, v) in &ok {
        want.extend_from_slice(k);
        want.push(b'=');
        want.extend_from_slice(v);
        want.push(0);
    }
    let mut buf = vec![0u8; want.len()];
    let mut w = TextWriter::new(&mut buf);
    for (k, v) in &ok {
        w.pair(k, v).unwrap();
    }
    assert_eq!(w.as_bytes(), &want[..]);
    let again: Vec<_> = pairs(&want).map(|p| p.map(|p| (p.key, p.value))).collect();
    assert_eq!(again, ok.iter().copied().map(Ok).collect::<Vec<_>>());

    // A small buffer: each entry whole or not at all.
    let mut small = vec![0u8; usize::from(aux)];
    let mut w = TextWriter::new(&mut small);
    for (k, v) in &ok {
        let before = w.len();
        match w.pair(k, v) {
            Ok(()) => assert_eq!(w.len(), before + k.len() + v.len() + 2),
            Err(WriteError) => assert_eq!(w.len(), before),
        }
    }
    assert_eq!(
        validate(w.as_bytes()).ok(),
        Some(pairs(w.as_bytes()).count())
    );
    // A NUL never gets in.
    assert_eq!(w.pair(b"A\0", b"1"), Err(WriteError));
    assert_eq!(w.pair(b"A", b"\0"), Err(WriteError));

    for &(k, v) in &ok {
        value_properties(v);
        let _ = is_extension_key(k);
    }
    value_properties(t);
}

fn value_properties(v: &[u8]) {
    // Numbers against the standard library.
    let n = parse_number(v);
    if !v.is_empty() && v.iter().all(u8::is_ascii_digit) {
        assert_eq!(
            n,
            std::str::from_utf8(v).unwrap().parse::<u64>().ok(),
            "{v:?}"
        );
    }
    if let [b'0', b'x' | b'X', digits @ ..] = v {
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_hexdigit) {
            let s = std::str::from_utf8(digits).unwrap().trim_start_matches('0');
            let want = if s.is_empty() {
                Some(0)
            } else {
                u64::from_str_radix(s, 16).ok()
            };
            assert_eq!(n, want, "{v:?}");
        }
    }
    if let [b'0', b'b' | b'B', ..] = v {
        let mut buf = [0u8; 8];
        let want = decode_binary(v, &mut buf)
            .map(|len| buf[..len].iter().fold(0u64, |n, &b| n << 8 | u64::from(b)));
        assert_eq!(n, want, "{v:?}");
    }
    let (min, max) = (512, 16_777_215);
    if let Some(r) = parse_in_range(v, min, max) {
        assert!((min..=max).contains(&r) && n == Some(u64::from(r)));
    }
    assert_eq!(parse_bool(v).is_some(), v == b"Yes" || v == b"No");
    assert_eq!(list_items(v).collect::<Vec<_>>().join(&b','), v);

    // Binary values: decode what an encoder wrote; reject a short buffer.
    let mut out = vec![0u8; v.len() + 1];
    if let Some(len) = decode_binary(v, &mut out) {
        assert!(len > 0 && len <= out.len());
        assert!(decode_binary(v, &mut vec![0u8; len - 1]).is_none());
    }
    if !v.is_empty() {
        let bytes = &v[..v.len().min(64)];
        for s in [
            to_hex(bytes),
            to_hex(bytes).to_uppercase().replacen("0X", "0x", 1),
        ] {
            assert_eq!(decode_binary(s.as_bytes(), &mut out), Some(bytes.len()));
            assert_eq!(&out[..bytes.len()], bytes);
        }
        for pad in [false, true] {
            let s = to_base64(bytes, pad);
            assert_eq!(
                decode_binary(s.as_bytes(), &mut out),
                Some(bytes.len()),
                "{s}"
            );
            assert_eq!(&out[..bytes.len()], bytes);
        }
        let mut buf = vec![0u8; 2 + 2 * bytes.len() + 8];
        let mut w = TextWriter::new(&mut buf);
        w.pair_hex(b"K", bytes).unwrap();
        let p = pairs(w.as_bytes()).next().unwrap().unwrap();
        assert_eq!(decode_binary(p.value, &mut out), Some(bytes.len()));
        assert_eq!(&out[..bytes.len()], bytes);
    }

    // Written numbers read back.
    let num = v.iter().fold(0u64, |n, &b| n.rotate_left(8) ^ u64::from(b));
    let mut buf = [0u8; 32];
    let mut w = TextWriter::new(&mut buf);
    w.pair_number(b"N", num).unwrap();
    assert_eq!(find(w.as_bytes(), b"N").and_then(parse_number), Some(num));

    // Names and CHAP values.
    match IscsiName::new(v) {
        Some(name) => assert_eq!(name.as_bytes(), v),
        None => assert!(v.len() > MAX_NAME_LEN),
    }
    assert!(names_equal(v, &v.to_ascii_uppercase()));
    if let Some(alg) = choose_algorithm(v) {
        let code = u64::from(alg.code());
        assert!(list_items(v).any(|i| parse_number(i) == Some(code)));
    }
    let (a, b) = v.split_at(v.len() / 2);
    assert_eq!(constant_time_eq(a, b), a == b);
}

// ---------------------------------------------------------------------------
// The text negotiation.

fn session(flags: u8, max_xmit: u32) -> Negotiated {
    let discovery = flags & DISCOVERY != 0;
    let initiator = if flags & SECOND_INITIATOR != 0 {
        INITIATOR2
    } else {
        INITIATOR
    };
    let target = match (discovery, flags & SECOND_INITIATOR != 0) {
        (true, _) => "",
        (false, false) => TARGET,
        (false, true) => ACL_TARGET,
    };
    Negotiated {
        session_type: if discovery {
            SessionType::Discovery
        } else {
            SessionType::Normal
        },
        initiator_name: IscsiName::new(initiator.as_bytes()).unwrap(),
        target_name: IscsiName::new(target.as_bytes()).unwrap(),
        isid: [0x40, 0, 1, 0x37, 0, 1],
        tsih: 1,
        cid: 0,
        header_digest: false,
        data_digest: false,
        max_recv_data_segment_length: 8192,
        max_xmit_data_segment_length: max_xmit,
        max_burst_length: 262_144,
        first_burst_length: 65_536,
        initial_r2t: true,
        immediate_data: true,
        max_outstanding_r2t: 1,
        max_connections: 1,
        error_recovery_level: 0,
        data_pdu_in_order: true,
        data_sequence_in_order: true,
        default_time2wait: 2,
        default_time2retain: 20,
        iscsi_protocol_level: 1,
    }
}

/// A complete response: well formed, SendTargets answered within the
/// session's rights, every target with all its addresses.
fn check_response(resp: &[u8], s: &Negotiated, catalog: &Targets) {
    if let Err(e) = validate(resp) {
        panic!(
            "malformed response {e:?}: {:?}",
            String::from_utf8_lossy(resp)
        );
    }
    let entries: Vec<_> = pairs(resp).map(Result::unwrap).collect();
    let mut names = Vec::new();
    for (i, p) in entries.iter().enumerate() {
        // A TargetName the initiator sent is answered Reject.
        if p.key != b"TargetName" || p.value == REJECT {
            continue;
        }
        let t = catalog
            .targets
            .iter()
            .find(|t| t.name.as_bytes() == p.value)
            .expect("an unknown target listed");
        assert!(
            Targets::visible(t, s.initiator_name.as_bytes()),
            "{} listed",
            t.name
        );
        if s.session_type == SessionType::Normal {
            assert!(names_equal(p.value, s.target_name.as_bytes()));
        }
        assert!(!names.contains(&p.value), "{} listed twice", t.name);
        names.push(p.value);
        for (j, a) in t.addresses.iter().enumerate() {
            let e = entries.get(i + 1 + j).expect("addresses cut off");
            assert_eq!((e.key, e.value), (&b"TargetAddress"[..], a.as_bytes()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.u8();
    let storage = STORAGE_SIZES[usize::from(inp.u8()) % STORAGE_SIZES.len()];
    let out_len = OUT_SIZES[usize::from(inp.u8()) % OUT_SIZES.len()];
    let xmit_cap = match inp.u8() % 4 {
        0 => 8192,
        1 => 512,
        2 => 1 << 20,
        _ => inp.u32(),
    };
    let max_xmit = [8192, 512, 4096, 262_144][usize::from(inp.u8() % 4)];
    let aux = inp.u8();
    parse_properties(inp.0, aux);

    let s = session(flags, max_xmit);
    let catalog = Targets::new(Config(flags & MANY));
    let mut neg = TextNegotiation::new(vec![0u8; storage], &s, xmit_cap);
    let mut out = vec![0u8; out_len];
    let cap = xmit_cap.clamp(512, 16_777_215);
    let mut max_xmit = s.max_xmit_data_segment_length;
    let mut last_ttt = RESERVED_TAG;
    let mut response = Vec::new();

    for _ in 0..16 {
        if inp.is_empty() {
            break;
        }
        let step = inp.u8();
        let itt = if step & ITT_INPUT != 0 { inp.u32() } else { 1 };
        let ttt = match step & (TTT_LAST | TTT_INPUT) {
            0 => RESERVED_TAG,
            TTT_LAST => last_ttt,
            _ => inp.u32(),
        };
        let req = TextRequest {
            final_pdu: step & FINAL != 0,
            cont: step & CONT != 0,
            itt,
            ttt,
        };
        let text = inp.segment();
        parse_properties(text, step);
        if ttt == RESERVED_TAG {
            response.clear();
        }
        out.fill(0xee);
        let st = neg.step(&req, text, &catalog, &mut out);
        if trace() {
            eprintln!("{req:?} {:?}", String::from_utf8_lossy(text));
            let data = out.get(..st.data_len).unwrap_or(&[]);
            eprintln!("  -> {st:?} {:?}", String::from_utf8_lossy(data));
        }

        assert!(st.data_len <= out.len());
        let limit = max_xmit.min(st.max_xmit_data_segment_length.unwrap_or(u32::MAX));
        assert!(st.data_len <= limit as usize, "{st:?} over {limit}");
        if let Some(m) = st.max_xmit_data_segment_length {
            assert!((512..=cap).contains(&m), "{m} beyond {cap}");
            max_xmit = m;
        }
        assert!(!(st.cont && st.final_pdu));
        match st.outcome {
            TextOutcome::Reject(reason) => {
                assert!(matches!(
                    reason,
                    RejectReason::ProtocolError | RejectReason::InvalidPduField
                ));
                assert_eq!(st.data_len, 0);
                assert_eq!(st.ttt, RESERVED_TAG);
                assert!(!st.final_pdu && !st.cont && st.max_xmit_data_segment_length.is_none());
                response.clear();
                last_ttt = RESERVED_TAG;
            }
            TextOutcome::Respond => {
                assert_eq!(st.final_pdu, st.ttt == RESERVED_TAG, "{st:?}");
                assert!(!st.final_pdu || req.final_pdu);
                last_ttt = st.ttt;
                response.extend_from_slice(&out[..st.data_len]);
                if !st.cont {
                    check_response(&response, &s, &catalog);
                    response.clear();
                }
            }
        }
    }
});

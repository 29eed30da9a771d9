// SPDX-License-Identifier: GPL-2.0

//! The PDU codec: any 48-byte header through `Bhs::parse` and every
//! decoder; decoded fields re-encoded (by the target encoder with the mirror
//! layout, or by a reference encoder here) parse back to the same value;
//! target PDUs built from the input encode to the offsets RFC 7143 gives
//! and decode back. Input: the header (zero-padded), then bytes for the
//! limits, the encoders' fields and a data segment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scst_fuzz::Input;
use scst_host_tests::scst_iscsi::login::{LoginRequest, TextRequest};
use scst_host_tests::scst_iscsi::pdu::*;

type Header = [u8; BHS_LEN];

fn be32(b: &Header, at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16(b: &Header, at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put32(b: &mut Header, at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put16(b: &mut Header, at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn lun(b: &Header) -> [u8; 8] {
    b[8..16].try_into().unwrap()
}

fn dsl(b: &Header) -> u32 {
    u32::from_be_bytes([0, b[5], b[6], b[7]])
}

fn flag(on: bool, bit: u8) -> u8 {
    if on {
        bit
    } else {
        0
    }
}

// ---------------------------------------------------------------------------
// The common header.

fn common(h: &Header, max: u32) {
    match Bhs::parse(h, max) {
        Ok(bhs) => {
            assert_eq!(bhs.opcode as u8, h[0] & 0x3f);
            assert_eq!(bhs.immediate, h[0] & 0x40 != 0);
            assert_eq!(bhs.final_pdu, h[1] & 0x80 != 0);
            assert_eq!(bhs.ahs_len, usize::from(h[4]) * 4);
            assert_eq!(bhs.data_segment_len, dsl(h));
            assert!(bhs.data_segment_len <= max);
            assert_eq!(bhs.lun, lun(h));
            assert_eq!(bhs.itt, be32(h, 16));
            let data = bhs.data_segment_len as usize;
            for hd in [false, true] {
                for dd in [false, true] {
                    let n = bhs.bytes_after_bhs(hd, dd);
                    let min = bhs.ahs_len + data;
                    assert!(n >= min && n <= min + 3 + 2 * DIGEST_LEN, "{bhs:?} {n}");
                    assert_eq!(n % 4, 0, "{bhs:?}");
                }
            }
            assert_eq!(
                bhs.bytes_after_bhs(false, true) == bhs.bytes_after_bhs(false, false),
                data == 0
            );
            let op = InitiatorOpcode::from_bits(h[0] & 0x3f);
            assert_eq!(op, Some(bhs.opcode));
        }
        Err(BhsError::UnknownOpcode(bits)) => {
            assert_eq!(bits, h[0] & 0x3f);
            assert_eq!(InitiatorOpcode::from_bits(bits), None);
        }
        Err(e @ BhsError::DataSegmentTooLong { len, max: m }) => {
            assert_eq!((len, m), (dsl(h), max));
            assert!(len > max);
            assert!(InitiatorOpcode::from_bits(h[0] & 0x3f).is_some());
            assert_eq!(e.reject_reason(), RejectReason::ProtocolError);
        }
    }
    // The data segment length writes back where it was read.
    let mut b = *h;
    let len = dsl(h);
    set_data_segment_len(&mut b, len).unwrap();
    assert_eq!(&b, h);
    assert!(set_data_segment_len(&mut b, len | 1 << 24).is_err());
    assert_eq!(&b, h);
}

// ---------------------------------------------------------------------------
// Initiator PDUs: decode, re-encode, decode again.

/// Reference encoders of the initiator PDUs that have no mirror target PDU
/// (RFC 7143, 11.3, 11.5, 11.14, 11.16); reserved bytes stay zero.
fn encode_scsi_command(p: &ScsiCommandPdu) -> Header {
    let mut b = [0; BHS_LEN];
    b[0] = 0x01 | flag(p.immediate, 0x40);
    b[1] = flag(p.final_pdu, 0x80) | flag(p.read, 0x40) | flag(p.write, 0x20) | p.attr;
    b[8..16].copy_from_slice(&p.lun);
    put32(&mut b, 16, p.itt);
    put32(&mut b, 20, p.expected_data_transfer_length);
    put32(&mut b, 24, p.cmd_sn);
    put32(&mut b, 28, p.exp_stat_sn);
    b[32..48].copy_from_slice(&p.cdb);
    b
}

fn encode_task_mgmt(p: &TaskMgmtPdu) -> Header {
    let mut b = [0; BHS_LEN];
    b[0] = 0x02 | flag(p.immediate, 0x40);
    b[1] = 0x80 | p.function;
    b[8..16].copy_from_slice(&p.lun);
    put32(&mut b, 16, p.itt);
    put32(&mut b, 20, p.referenced_task_tag);
    put32(&mut b, 24, p.cmd_sn);
    put32(&mut b, 28, p.exp_stat_sn);
    put32(&mut b, 32, p.ref_cmd_sn);
    put32(&mut b, 36, p.exp_data_sn);
    b
}

fn encode_logout(p: &LogoutPdu) -> Header {
    let mut b = [0; BHS_LEN];
    b[0] = 0x06 | flag(p.immediate, 0x40);
    b[1] = 0x80 | p.reason;
    put32(&mut b, 16, p.itt);
    put16(&mut b, 20, p.cid);
    put32(&mut b, 24, p.cmd_sn);
    put32(&mut b, 28, p.exp_stat_sn);
    b
}

fn encode_snack(p: &SnackPdu) -> Header {
    let mut b = [0; BHS_LEN];
    b[0] = 0x10;
    b[1] = 0x80 | p.snack_type;
    b[8..16].copy_from_slice(&p.lun);
    put32(&mut b, 16, p.itt);
    put32(&mut b, 20, p.ttt);
    put32(&mut b, 28, p.exp_stat_sn);
    put32(&mut b, 40, p.beg_run);
    put32(&mut b, 44, p.run_length);
    b
}

fn initiator_pdus(h: &Header, inp: &mut Input<'_>) {
    let dirt = inp.u8();
    let dirty = || [dirt; BHS_LEN];

    let p = ScsiCommandPdu::parse(h);
    assert!(p.attr <= 7);
    assert_eq!(p.cdb, h[32..48]);
    assert_eq!(ScsiCommandPdu::parse(&encode_scsi_command(&p)), p);

    let p = TaskMgmtPdu::parse(h);
    assert!(p.function <= 0x7f);
    assert_eq!(TaskMgmtPdu::parse(&encode_task_mgmt(&p)), p);
    if let Some(f) = TmfFunction::from_u8(p.function) {
        assert_eq!(f as u8, p.function);
    }
    if let Some(r) = TmfResponse::from_u8(h[2]) {
        assert_eq!(r as u8, h[2]);
    }

    let p = LogoutPdu::parse(h);
    assert!(p.reason <= 0x7f);
    assert_eq!(LogoutPdu::parse(&encode_logout(&p)), p);

    let p = SnackPdu::parse(h);
    assert!(p.snack_type <= 0x0f);
    assert_eq!(SnackPdu::parse(&encode_snack(&p)), p);

    // NOP-Out <-> NOP-In: LUN, ITT, TTT and bytes 24-31 at the same offsets.
    let p = NopOutPdu::parse(h);
    let mut b = dirty();
    NopIn {
        lun: p.lun,
        itt: p.itt,
        ttt: p.ttt,
        stat_sn: p.cmd_sn,
        exp_cmd_sn: p.exp_stat_sn,
        max_cmd_sn: inp.u32(),
        data_segment_len: inp.u32() & MAX_DATA_SEGMENT_LEN,
    }
    .encode(&mut b);
    assert_eq!(
        NopOutPdu::parse(&b),
        NopOutPdu {
            immediate: false,
            ..p
        }
    );

    // Data-Out <-> R2T.
    let p = DataOutPdu::parse(h);
    R2t {
        lun: p.lun,
        itt: p.itt,
        ttt: p.ttt,
        stat_sn: inp.u32(),
        exp_cmd_sn: p.exp_stat_sn,
        max_cmd_sn: inp.u32(),
        r2t_sn: p.data_sn,
        buffer_offset: p.buffer_offset,
        desired_data_transfer_length: inp.u32(),
    }
    .encode(&mut b);
    assert_eq!(
        DataOutPdu::parse(&b),
        DataOutPdu {
            final_pdu: true,
            ..p
        }
    );

    // Login Request <-> Login Response.
    let p = LoginPdu::parse(h);
    assert!(p.csg <= 3 && p.nsg <= 3);
    let r = LoginRequest::parse(h);
    assert_eq!(
        (
            r.transit,
            r.cont,
            r.csg,
            r.nsg,
            r.version_max,
            r.version_min
        ),
        (
            p.transit,
            p.cont,
            p.csg,
            p.nsg,
            p.version_max,
            p.version_min
        )
    );
    assert_eq!(
        (r.isid, r.tsih, r.itt, r.cid, r.cmd_sn, r.exp_stat_sn),
        (p.isid, p.tsih, p.itt, p.cid, p.cmd_sn, p.exp_stat_sn)
    );
    let mut b = dirty();
    LoginResponse {
        transit: p.transit,
        cont: p.cont,
        csg: p.csg,
        nsg: p.nsg,
        version_max: p.version_max,
        version_active: p.version_min,
        isid: p.isid,
        tsih: p.tsih,
        itt: p.itt,
        stat_sn: p.cmd_sn,
        exp_cmd_sn: p.exp_stat_sn,
        max_cmd_sn: inp.u32(),
        status_class: inp.u8(),
        status_detail: inp.u8(),
        data_segment_len: inp.u32() & MAX_DATA_SEGMENT_LEN,
    }
    .encode(&mut b);
    assert_eq!(
        LoginPdu::parse(&b),
        LoginPdu {
            immediate: false,
            nsg: if p.transit { p.nsg } else { 0 },
            cid: 0,
            ..p
        }
    );

    // Text Request <-> Text Response.
    let p = TextPdu::parse(h);
    let r = TextRequest::from_bhs(h);
    assert_eq!(
        (r.final_pdu, r.cont, r.itt, r.ttt),
        (p.final_pdu, p.cont, p.itt, p.ttt)
    );
    let mut b = dirty();
    TextResponse {
        final_pdu: p.final_pdu,
        cont: p.cont,
        lun: p.lun,
        itt: p.itt,
        ttt: p.ttt,
        stat_sn: p.cmd_sn,
        exp_cmd_sn: p.exp_stat_sn,
        max_cmd_sn: inp.u32(),
        data_segment_len: inp.u32() & MAX_DATA_SEGMENT_LEN,
    }
    .encode(&mut b);
    assert_eq!(
        TextPdu::parse(&b),
        TextPdu {
            immediate: false,
            ..p
        }
    );
}

// ---------------------------------------------------------------------------
// Target PDUs: encode from the input, check every byte, decode back.

/// Encodes into a zeroed and a dirty buffer: encode() writes all 48 bytes.
fn encode(f: impl Fn(&mut Header)) -> Header {
    let mut a = [0; BHS_LEN];
    let mut b = [0xa5; BHS_LEN];
    f(&mut a);
    f(&mut b);
    assert_eq!(a, b, "encode left bytes unwritten");
    // The common fields: a target opcode, no AHS, 24-bit length.
    assert_eq!(a[4], 0);
    assert!(matches!(
        Bhs::parse(&a, u32::MAX),
        Err(BhsError::UnknownOpcode(_))
    ));
    let mut c = a;
    c[0] = 0; // NOP-Out
    let bhs = Bhs::parse(&c, u32::MAX).unwrap();
    assert_eq!(
        (bhs.ahs_len, bhs.data_segment_len, bhs.itt),
        (0, dsl(&a), be32(&a, 16))
    );
    a
}

fn zero(b: &Header, ranges: &[(usize, usize)]) {
    for &(start, end) in ranges {
        assert!(
            b[start..end].iter().all(|&x| x == 0),
            "{start}..{end} in {b:02x?}"
        );
    }
}

fn seq(b: &Header) -> (u32, u32, u32) {
    (be32(b, 24), be32(b, 28), be32(b, 32))
}

fn rejects(inp: &mut Input<'_>) -> RejectReason {
    const ALL: [RejectReason; 10] = [
        RejectReason::DataDigestError,
        RejectReason::SnackReject,
        RejectReason::ProtocolError,
        RejectReason::CommandNotSupported,
        RejectReason::TooManyImmediateCommands,
        RejectReason::TaskInProgress,
        RejectReason::InvalidDataAck,
        RejectReason::InvalidPduField,
        RejectReason::LongOpReject,
        RejectReason::WaitingForLogout,
    ];
    ALL[usize::from(inp.u8()) % ALL.len()]
}

fn target_pdus(inp: &mut Input<'_>) {
    let dsl_in = inp.u32();
    let len = dsl_in & MAX_DATA_SEGMENT_LEN;

    let r = ScsiResponse {
        bidi_overflow: inp.bool(),
        bidi_underflow: inp.bool(),
        overflow: inp.bool(),
        underflow: inp.bool(),
        response: inp.u8(),
        status: inp.u8(),
        itt: inp.u32(),
        exp_data_sn: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        bidi_residual_count: inp.u32(),
        residual_count: inp.u32(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| r.encode(b));
    assert_eq!(b[0], TargetOpcode::ScsiResponse as u8);
    let flags = 0x80
        | flag(r.bidi_overflow, 0x10)
        | flag(r.bidi_underflow, 0x08)
        | flag(r.overflow, 0x04)
        | flag(r.underflow, 0x02);
    assert_eq!((b[1], b[2], b[3]), (flags, r.response, r.status));
    assert_eq!(dsl(&b), len);
    zero(&b, &[(8, 16), (20, 24)]);
    assert_eq!(be32(&b, 16), r.itt);
    assert_eq!(seq(&b), (r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn));
    assert_eq!(be32(&b, 36), r.exp_data_sn);
    let bidi = r.bidi_overflow || r.bidi_underflow;
    assert_eq!(be32(&b, 40), if bidi { r.bidi_residual_count } else { 0 });
    let res = r.overflow || r.underflow;
    assert_eq!(be32(&b, 44), if res { r.residual_count } else { 0 });

    let d = DataIn {
        final_pdu: inp.bool(),
        ack: inp.bool(),
        overflow: inp.bool(),
        underflow: inp.bool(),
        status_present: inp.bool(),
        status: inp.u8(),
        lun: inp.array(),
        itt: inp.u32(),
        ttt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        data_sn: inp.u32(),
        buffer_offset: inp.u32(),
        residual_count: inp.u32(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| d.encode(b));
    let s = d.status_present;
    assert_eq!(b[0], TargetOpcode::DataIn as u8);
    let flags = flag(d.final_pdu || s, 0x80)
        | flag(d.ack, 0x40)
        | flag(s && d.overflow, 0x04)
        | flag(s && d.underflow, 0x02)
        | flag(s, 0x01);
    assert_eq!(b[1], flags);
    assert_eq!((b[2], b[3]), (0, if s { d.status } else { 0 }));
    assert_eq!(dsl(&b), len);
    assert_eq!(lun(&b), if d.ack { d.lun } else { [0; 8] });
    assert_eq!(be32(&b, 16), d.itt);
    assert_eq!(be32(&b, 20), if d.ack { d.ttt } else { RESERVED_TAG });
    let stat_sn = if s { d.stat_sn } else { 0 };
    assert_eq!(seq(&b), (stat_sn, d.exp_cmd_sn, d.max_cmd_sn));
    assert_eq!((be32(&b, 36), be32(&b, 40)), (d.data_sn, d.buffer_offset));
    let res = s && (d.overflow || d.underflow);
    assert_eq!(be32(&b, 44), if res { d.residual_count } else { 0 });

    let r = R2t {
        lun: inp.array(),
        itt: inp.u32(),
        ttt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        r2t_sn: inp.u32(),
        buffer_offset: inp.u32(),
        desired_data_transfer_length: inp.u32(),
    };
    let b = encode(|b| r.encode(b));
    assert_eq!(&b[..8], &[TargetOpcode::R2t as u8, 0x80, 0, 0, 0, 0, 0, 0]);
    assert_eq!((lun(&b), be32(&b, 16), be32(&b, 20)), (r.lun, r.itt, r.ttt));
    assert_eq!(seq(&b), (r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn));
    assert_eq!(
        (be32(&b, 36), be32(&b, 40), be32(&b, 44)),
        (r.r2t_sn, r.buffer_offset, r.desired_data_transfer_length)
    );

    let n = NopIn {
        lun: inp.array(),
        itt: inp.u32(),
        ttt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| n.encode(b));
    assert_eq!(&b[..5], &[TargetOpcode::NopIn as u8, 0x80, 0, 0, 0]);
    assert_eq!(dsl(&b), len);
    assert_eq!((lun(&b), be32(&b, 16), be32(&b, 20)), (n.lun, n.itt, n.ttt));
    assert_eq!(seq(&b), (n.stat_sn, n.exp_cmd_sn, n.max_cmd_sn));
    zero(&b, &[(36, 48)]);

    let l = LoginResponse {
        transit: inp.bool(),
        cont: inp.bool(),
        csg: inp.u8(),
        nsg: inp.u8(),
        version_max: inp.u8(),
        version_active: inp.u8(),
        isid: inp.array(),
        tsih: inp.u16(),
        itt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        status_class: inp.u8(),
        status_detail: inp.u8(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| l.encode(b));
    let nsg = if l.transit { l.nsg & 3 } else { 0 };
    let flags = flag(l.transit, 0x80) | flag(l.cont, 0x40) | (l.csg & 3) << 2 | nsg;
    assert_eq!(
        (b[0], b[1], b[2], b[3]),
        (
            TargetOpcode::LoginResponse as u8,
            flags,
            l.version_max,
            l.version_active
        )
    );
    assert_eq!(dsl(&b), len);
    assert_eq!(
        (&b[8..14], be16(&b, 14), be32(&b, 16)),
        (&l.isid[..], l.tsih, l.itt)
    );
    assert_eq!(seq(&b), (l.stat_sn, l.exp_cmd_sn, l.max_cmd_sn));
    assert_eq!((b[36], b[37]), (l.status_class, l.status_detail));
    zero(&b, &[(20, 24), (38, 48)]);

    let t = TextResponse {
        final_pdu: inp.bool(),
        cont: inp.bool(),
        lun: inp.array(),
        itt: inp.u32(),
        ttt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| t.encode(b));
    let flags = flag(t.final_pdu, 0x80) | flag(t.cont, 0x40);
    assert_eq!(&b[..5], &[TargetOpcode::TextResponse as u8, flags, 0, 0, 0]);
    assert_eq!(dsl(&b), len);
    assert_eq!((lun(&b), be32(&b, 16), be32(&b, 20)), (t.lun, t.itt, t.ttt));
    assert_eq!(seq(&b), (t.stat_sn, t.exp_cmd_sn, t.max_cmd_sn));
    zero(&b, &[(36, 48)]);

    let l = LogoutResponse {
        response: inp.u8(),
        itt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        time2wait: inp.u16(),
        time2retain: inp.u16(),
    };
    let b = encode(|b| l.encode(b));
    assert_eq!(&b[..2], &[TargetOpcode::LogoutResponse as u8, 0x80]);
    assert_eq!((b[2], be32(&b, 16)), (l.response, l.itt));
    assert_eq!(seq(&b), (l.stat_sn, l.exp_cmd_sn, l.max_cmd_sn));
    assert_eq!((be16(&b, 40), be16(&b, 42)), (l.time2wait, l.time2retain));
    zero(&b, &[(3, 16), (20, 24), (36, 40), (44, 48)]);

    let m = TaskMgmtResponse {
        response: inp.u8(),
        itt: inp.u32(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
    };
    let b = encode(|b| m.encode(b));
    assert_eq!(&b[..2], &[TargetOpcode::TaskMgmtResponse as u8, 0x80]);
    assert_eq!((b[2], be32(&b, 16)), (m.response, m.itt));
    assert_eq!(seq(&b), (m.stat_sn, m.exp_cmd_sn, m.max_cmd_sn));
    zero(&b, &[(3, 16), (20, 24), (36, 48)]);

    let r = Reject {
        reason: rejects(inp),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        data_sn_r2t_sn: inp.u32(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| r.encode(b));
    assert_eq!(&b[..3], &[TargetOpcode::Reject as u8, 0x80, r.reason as u8]);
    assert_eq!(dsl(&b), len);
    assert_eq!(be32(&b, 16), RESERVED_TAG);
    assert_eq!(seq(&b), (r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn));
    assert_eq!(be32(&b, 36), r.data_sn_r2t_sn);
    zero(&b, &[(3, 5), (8, 16), (20, 24), (40, 48)]);

    let a = AsyncMessage {
        lun: inp.array(),
        stat_sn: inp.u32(),
        exp_cmd_sn: inp.u32(),
        max_cmd_sn: inp.u32(),
        async_event: inp.u8(),
        async_vcode: inp.u8(),
        parameter1: inp.u16(),
        parameter2: inp.u16(),
        parameter3: inp.u16(),
        data_segment_len: dsl_in,
    };
    let b = encode(|b| a.encode(b));
    assert_eq!(&b[..2], &[TargetOpcode::AsyncMessage as u8, 0x80]);
    assert_eq!(dsl(&b), len);
    assert_eq!((lun(&b), be32(&b, 16)), (a.lun, RESERVED_TAG));
    assert_eq!(seq(&b), (a.stat_sn, a.exp_cmd_sn, a.max_cmd_sn));
    assert_eq!((b[36], b[37]), (a.async_event, a.async_vcode));
    assert_eq!(
        (be16(&b, 38), be16(&b, 40), be16(&b, 42)),
        (a.parameter1, a.parameter2, a.parameter3)
    );
    zero(&b, &[(2, 5), (20, 24), (44, 48)]);
}

// ---------------------------------------------------------------------------
// Serial numbers and digests.

fn serial_numbers(a: u32, b: u32, c: u32) {
    let (lt, gt, eq) = (sn_lt(a, b), sn_gt(a, b), a == b);
    let unordered = b.wrapping_sub(a) == 1 << 31;
    // Exactly one of <, >, =, unordered.
    assert_eq!(
        u8::from(lt) + u8::from(gt) + u8::from(eq) + u8::from(unordered),
        1,
        "{a:#x} {b:#x}"
    );
    assert_eq!(sn_le(a, b), lt || eq);
    assert_eq!(sn_ge(a, b), gt || eq);
    assert_eq!(sn_lt(a, b), sn_gt(b, a));
    // Shifting all numbers keeps their order.
    let d = c;
    assert_eq!(sn_lt(a.wrapping_add(d), b.wrapping_add(d)), lt);
    // The window [b, c] holds b and c when it is not empty.
    if sn_le(b, c) {
        assert!(cmd_sn_in_window(b, b, c) && cmd_sn_in_window(c, b, c));
    }
    // MaxCmdSN = ExpCmdSN - 1: the window is empty.
    assert!(!cmd_sn_in_window(a, b, b.wrapping_sub(1)));
    assert_eq!(cmd_sn_in_window(a, b, b), a == b);
}

fn digests(data: &[u8], split: usize) {
    let split = split % (data.len() + 1);
    let (x, y) = data.split_at(split);
    let whole = iscsi_digest(&[data]);
    assert_eq!(iscsi_digest(&[x, y]), whole);
    assert_eq!(iscsi_digest(&[x, &[], y]), whole);
    assert_eq!(crc32c(crc32c(!0, x), y), crc32c(!0, data));
    assert_eq!((!crc32c(!0, data)).to_le_bytes(), whole);
    // A digest appended to the data checks to the CRC32C residue.
    let mut with = data.to_vec();
    with.extend_from_slice(&whole);
    assert_eq!(!crc32c(!0, &with), 0x48674bc7);
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let h: Header = inp.array();
    let max = match inp.u8() % 4 {
        0 => 8192,
        1 => u32::MAX,
        2 => 0,
        _ => inp.u32(),
    };
    common(&h, max);
    initiator_pdus(&h, &mut inp);
    let (a, b, c) = (be32(&h, 24), be32(&h, 28), be32(&h, 32));
    serial_numbers(a, b, c);
    let split = usize::from(inp.u8());
    target_pdus(&mut inp);
    digests(data, split);
});

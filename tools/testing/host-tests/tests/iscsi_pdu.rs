// SPDX-License-Identifier: GPL-2.0

use scst_host_tests::scst_iscsi::pdu::*;

/// A SCSI Command PDU: immediate, final, 1 AHS word, 5 data bytes, LUN 1,
/// ITT 0x01020304.
fn scsi_command() -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[0] = 0x40 | 0x01;
    b[1] = 0x80;
    b[4] = 1;
    b[7] = 5;
    b[9] = 1;
    b[16..20].copy_from_slice(&[1, 2, 3, 4]);
    b
}

#[test]
fn parses_common_fields() {
    let bhs = Bhs::parse(&scsi_command(), 8192).unwrap();
    assert_eq!(bhs.opcode, InitiatorOpcode::ScsiCommand);
    assert!(bhs.immediate && bhs.final_pdu);
    assert_eq!(bhs.ahs_len, 4);
    assert_eq!(bhs.data_segment_len, 5);
    assert_eq!(bhs.lun, [0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bhs.itt, 0x0102_0304);
    // AHS 4 + data padded to 8 (+ digests when negotiated).
    assert_eq!(bhs.bytes_after_bhs(false, false), 12);
    assert_eq!(bhs.bytes_after_bhs(true, true), 20);
}

#[test]
fn rejects_target_and_unknown_opcodes() {
    for op in [0x07u8, 0x20, 0x21, 0x3f, 0x1c] {
        let mut b = scsi_command();
        b[0] = op;
        let e = Bhs::parse(&b, 8192).unwrap_err();
        assert_eq!(e, BhsError::UnknownOpcode(op));
        assert_eq!(e.reject_reason(), RejectReason::CommandNotSupported);
    }
}

#[test]
fn refuses_data_beyond_max_recv_data_segment_length() {
    let mut b = scsi_command();
    set_data_segment_len(&mut b, 8193).unwrap();
    let e = Bhs::parse(&b, 8192).unwrap_err();
    assert_eq!(
        e,
        BhsError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        }
    );
    assert_eq!(e.reject_reason(), RejectReason::ProtocolError);
    set_data_segment_len(&mut b, 8192).unwrap();
    assert_eq!(Bhs::parse(&b, 8192).unwrap().data_segment_len, 8192);
}

#[test]
fn data_segment_length_is_24_bits() {
    let mut b = [0u8; BHS_LEN];
    set_data_segment_len(&mut b, MAX_DATA_SEGMENT_LEN).unwrap();
    assert_eq!(&b[5..8], &[0xff, 0xff, 0xff]);
    assert_eq!(set_data_segment_len(&mut b, 1 << 24), Err(1 << 24));
    assert_eq!(padded(0), 0);
    assert_eq!(padded(1), 4);
    assert_eq!(padded(4), 4);
    assert_eq!(padded(4097), 4100);
}

#[test]
fn every_header_decodes_or_is_rejected() {
    // Exhaustive over byte 0 and the length bytes' extremes: never panics.
    for b0 in 0..=255u8 {
        for len in [0u8, 0x7f, 0xff] {
            let mut b = [len; BHS_LEN];
            b[0] = b0;
            let _ = Bhs::parse(&b, u32::MAX);
        }
    }
}

// ---------------------------------------------------------------------------
// Initiator PDU decoders: every field from a hand-built header.

/// A header with `bytes` written at `at`, the rest zero.
fn header(fields: &[(usize, &[u8])]) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    for (at, bytes) in fields {
        b[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    b
}

const LUN: [u8; 8] = [0x00, 0x05, 0, 0, 0, 0, 0, 0x07];

#[test]
fn decodes_scsi_command() {
    let cdb: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    let b = header(&[
        (0, &[0x41, 0x80 | 0x40 | 0x20 | 0x18 | 0x05]),
        (8, &LUN),
        (16, &[0x11, 0x22, 0x33, 0x44]),
        (20, &[0, 0, 0x10, 0]),
        (24, &[0xff, 0xff, 0xff, 0xfe]),
        (28, &[0, 0, 0, 9]),
        (32, &cdb),
    ]);
    assert_eq!(
        ScsiCommandPdu::parse(&b),
        ScsiCommandPdu {
            immediate: true,
            final_pdu: true,
            read: true,
            write: true,
            attr: 5,
            lun: LUN,
            itt: 0x1122_3344,
            expected_data_transfer_length: 4096,
            cmd_sn: 0xffff_fffe,
            exp_stat_sn: 9,
            cdb,
        }
    );
    // Each flag on its own.
    let b = header(&[(0, &[0x01, 0x40])]);
    let cmd = ScsiCommandPdu::parse(&b);
    assert!(!cmd.immediate && !cmd.final_pdu && cmd.read && !cmd.write);
    assert_eq!(cmd.attr, 0);
    let b = header(&[(0, &[0x01, 0x20 | 0x02])]);
    let cmd = ScsiCommandPdu::parse(&b);
    assert!(!cmd.read && cmd.write);
    assert_eq!(cmd.attr, 2);
}

#[test]
fn decodes_data_out() {
    let b = header(&[
        (0, &[0x05, 0x80]),
        (8, &LUN),
        (16, &[0, 0, 0, 1]),
        (20, &[0, 0, 0, 2]),
        (24, &[0xee; 4]), // reserved: ignored
        (28, &[0, 0, 0, 3]),
        (32, &[0xee; 4]),
        (36, &[0, 0, 0, 4]),
        (40, &[0, 1, 0, 0]),
        (44, &[0xee; 4]),
    ]);
    assert_eq!(
        DataOutPdu::parse(&b),
        DataOutPdu {
            final_pdu: true,
            lun: LUN,
            itt: 1,
            ttt: 2,
            exp_stat_sn: 3,
            data_sn: 4,
            buffer_offset: 0x1_0000,
        }
    );
    assert!(!DataOutPdu::parse(&header(&[(0, &[0x05, 0x7f])])).final_pdu);
}

#[test]
fn decodes_nop_out() {
    let b = header(&[
        (0, &[0x40, 0x80]),
        (8, &LUN),
        (16, &[0xde, 0xad, 0xbe, 0xef]),
        (20, &[0xff; 4]),
        (24, &[0, 0, 1, 0]),
        (28, &[0, 0, 2, 0]),
    ]);
    assert_eq!(
        NopOutPdu::parse(&b),
        NopOutPdu {
            immediate: true,
            lun: LUN,
            itt: 0xdead_beef,
            ttt: RESERVED_TAG,
            cmd_sn: 0x100,
            exp_stat_sn: 0x200,
        }
    );
}

#[test]
fn decodes_task_mgmt() {
    let b = header(&[
        (0, &[0x42, 0x80 | 0x01]),
        (8, &LUN),
        (16, &[0, 0, 0, 0x10]),
        (20, &[0, 0, 0, 0x20]),
        (24, &[0, 0, 0, 0x30]),
        (28, &[0, 0, 0, 0x40]),
        (32, &[0, 0, 0, 0x50]),
        (36, &[0, 0, 0, 0x60]),
    ]);
    let tmf = TaskMgmtPdu::parse(&b);
    assert_eq!(
        tmf,
        TaskMgmtPdu {
            immediate: true,
            function: 1,
            lun: LUN,
            itt: 0x10,
            referenced_task_tag: 0x20,
            cmd_sn: 0x30,
            exp_stat_sn: 0x40,
            ref_cmd_sn: 0x50,
            exp_data_sn: 0x60,
        }
    );
    assert_eq!(
        TmfFunction::from_u8(tmf.function),
        Some(TmfFunction::AbortTask)
    );
    // The always-1 bit 7 is not part of the function.
    assert_eq!(
        TaskMgmtPdu::parse(&header(&[(0, &[0x02, 0xff])])).function,
        0x7f
    );
}

#[test]
fn tmf_codes() {
    let functions = [
        (1, TmfFunction::AbortTask),
        (2, TmfFunction::AbortTaskSet),
        (3, TmfFunction::ClearAca),
        (4, TmfFunction::ClearTaskSet),
        (5, TmfFunction::LogicalUnitReset),
        (6, TmfFunction::TargetWarmReset),
        (7, TmfFunction::TargetColdReset),
        (8, TmfFunction::TaskReassign),
    ];
    for (code, function) in functions {
        assert_eq!(TmfFunction::from_u8(code), Some(function));
        assert_eq!(function as u8, code);
    }
    for code in [0, 9, 0x7f, 0xff] {
        assert_eq!(TmfFunction::from_u8(code), None);
    }
    let responses = [
        (0, TmfResponse::Complete),
        (1, TmfResponse::TaskDoesNotExist),
        (2, TmfResponse::LunDoesNotExist),
        (3, TmfResponse::TaskStillAllegiant),
        (4, TmfResponse::ReassignmentNotSupported),
        (5, TmfResponse::NotSupported),
        (6, TmfResponse::AuthorizationFailed),
        (255, TmfResponse::Rejected),
    ];
    for (code, response) in responses {
        assert_eq!(TmfResponse::from_u8(code), Some(response));
        assert_eq!(response as u8, code);
    }
    for code in [7, 8, 254] {
        assert_eq!(TmfResponse::from_u8(code), None);
    }
}

#[test]
fn decodes_logout() {
    let b = header(&[
        (0, &[0x46, 0x80 | 0x02]),
        (16, &[0, 0, 0, 7]),
        (20, &[0x12, 0x34, 0xee, 0xee]),
        (24, &[0, 0, 0, 8]),
        (28, &[0, 0, 0, 9]),
    ]);
    assert_eq!(
        LogoutPdu::parse(&b),
        LogoutPdu {
            immediate: true,
            reason: 2,
            itt: 7,
            cid: 0x1234,
            cmd_sn: 8,
            exp_stat_sn: 9,
        }
    );
}

#[test]
fn decodes_text() {
    let b = header(&[
        (0, &[0x04, 0x40]),
        (8, &LUN),
        (16, &[0, 0, 0, 1]),
        (20, &[0, 0, 0, 2]),
        (24, &[0, 0, 0, 3]),
        (28, &[0, 0, 0, 4]),
    ]);
    assert_eq!(
        TextPdu::parse(&b),
        TextPdu {
            immediate: false,
            final_pdu: false,
            cont: true,
            lun: LUN,
            itt: 1,
            ttt: 2,
            cmd_sn: 3,
            exp_stat_sn: 4,
        }
    );
    let text = TextPdu::parse(&header(&[(0, &[0x44, 0x80])]));
    assert!(text.immediate && text.final_pdu && !text.cont);
}

#[test]
fn decodes_login() {
    // T=1, C=0, CSG=1 (operational), NSG=3 (full feature).
    let b = header(&[
        (0, &[0x43, 0x80 | 0x04 | 0x03, 0x00, 0x00]),
        (8, &[0x80, 0x12, 0x34, 0x56, 0x78, 0x9a, 0x00, 0x00]),
        (16, &[0, 0, 0, 0x42]),
        (20, &[0x00, 0x05]),
        (24, &[0, 0, 0, 1]),
        (28, &[0, 0, 0, 2]),
    ]);
    assert_eq!(
        LoginPdu::parse(&b),
        LoginPdu {
            immediate: true,
            transit: true,
            cont: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
            tsih: 0,
            itt: 0x42,
            cid: 5,
            cmd_sn: 1,
            exp_stat_sn: 2,
        }
    );
    // C=1, CSG=0, NSG=1, versions and a TSIH.
    let b = header(&[(0, &[0x43, 0x40 | 0x01, 0x02, 0x01]), (14, &[0xab, 0xcd])]);
    let login = LoginPdu::parse(&b);
    assert!(!login.transit && login.cont);
    assert_eq!((login.csg, login.nsg), (0, 1));
    assert_eq!((login.version_max, login.version_min), (2, 1));
    assert_eq!(login.tsih, 0xabcd);
}

#[test]
fn decodes_snack() {
    let b = header(&[
        (0, &[0x10, 0x80 | 0x03]),
        (8, &LUN),
        (16, &[0, 0, 0, 1]),
        (20, &[0, 0, 0, 2]),
        (28, &[0, 0, 0, 3]),
        (40, &[0, 0, 0, 4]),
        (44, &[0, 0, 0, 5]),
    ]);
    assert_eq!(
        SnackPdu::parse(&b),
        SnackPdu {
            snack_type: 3,
            lun: LUN,
            itt: 1,
            ttt: 2,
            exp_stat_sn: 3,
            beg_run: 4,
            run_length: 5,
        }
    );
    assert_eq!(
        SnackPdu::parse(&header(&[(0, &[0x10, 0xf1])])).snack_type,
        1
    );
}

#[test]
fn decoders_never_panic() {
    for fill in [0x00u8, 0x55, 0xaa, 0xff] {
        let b = [fill; BHS_LEN];
        let _ = ScsiCommandPdu::parse(&b);
        let _ = DataOutPdu::parse(&b);
        let _ = NopOutPdu::parse(&b);
        let _ = TaskMgmtPdu::parse(&b);
        let _ = LogoutPdu::parse(&b);
        let _ = TextPdu::parse(&b);
        let login = LoginPdu::parse(&b);
        assert!(login.csg <= 3 && login.nsg <= 3);
        assert!(SnackPdu::parse(&b).snack_type <= 0x0f);
    }
}

// ---------------------------------------------------------------------------
// Target PDU encoders: the bytes at the offsets RFC 7143 gives.

fn be32_at(b: &[u8; BHS_LEN], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn dsl(b: &[u8; BHS_LEN]) -> u32 {
    u32::from_be_bytes([0, b[5], b[6], b[7]])
}

/// StatSN, ExpCmdSN, MaxCmdSN at 24, 28, 32.
fn assert_sequence_numbers(b: &[u8; BHS_LEN], stat_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) {
    assert_eq!(&b[24..28], &stat_sn.to_be_bytes());
    assert_eq!(&b[28..32], &exp_cmd_sn.to_be_bytes());
    assert_eq!(&b[32..36], &max_cmd_sn.to_be_bytes());
}

/// A header that encode() must overwrite completely.
fn dirty() -> [u8; BHS_LEN] {
    [0xcc; BHS_LEN]
}

/// Bytes `start..end` of each pair are zero.
fn assert_zero(b: &[u8; BHS_LEN], ranges: &[(usize, usize)]) {
    for &(start, end) in ranges {
        assert!(
            b[start..end].iter().all(|&x| x == 0),
            "bytes {start}..{end} not zero: {b:02x?}"
        );
    }
}

fn scsi_response() -> ScsiResponse {
    ScsiResponse {
        bidi_overflow: false,
        bidi_underflow: false,
        overflow: false,
        underflow: true,
        response: 0,
        status: 0x02,
        itt: 0x0102_0304,
        exp_data_sn: 3,
        stat_sn: 0x1000,
        exp_cmd_sn: 0x2000,
        max_cmd_sn: 0x2040,
        bidi_residual_count: 0x99,
        residual_count: 512,
        data_segment_len: 20,
    }
}

#[test]
fn encodes_scsi_response() {
    let mut b = dirty();
    scsi_response().encode(&mut b);
    assert_eq!(b[0], 0x21);
    assert_eq!(b[1], 0x80 | 0x02);
    assert_eq!(b[2], 0);
    assert_eq!(b[3], 0x02);
    assert_eq!(b[4], 0);
    assert_eq!(&b[5..8], &[0, 0, 20]);
    assert_eq!(dsl(&b), 20);
    assert_eq!(&b[16..20], &[1, 2, 3, 4]);
    assert_sequence_numbers(&b, 0x1000, 0x2000, 0x2040);
    assert_eq!(be32_at(&b, 36), 3);
    // No o/u: the bidirectional residual is reserved.
    assert_eq!(be32_at(&b, 40), 0);
    assert_eq!(be32_at(&b, 44), 512);
    assert_zero(&b, &[(8, 16), (20, 24)]);

    let mut b = dirty();
    ScsiResponse {
        bidi_overflow: true,
        bidi_underflow: false,
        overflow: true,
        underflow: false,
        response: 1,
        ..scsi_response()
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x80 | 0x10 | 0x04);
    assert_eq!(b[2], 1);
    assert_eq!(be32_at(&b, 40), 0x99);
    assert_eq!(be32_at(&b, 44), 512);

    let mut b = dirty();
    ScsiResponse {
        bidi_underflow: true,
        underflow: false,
        ..scsi_response()
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x80 | 0x08);
    assert_eq!(be32_at(&b, 40), 0x99);
    // No O/U: the residual is reserved.
    assert_eq!(be32_at(&b, 44), 0);
}

fn data_in() -> DataIn {
    DataIn {
        final_pdu: false,
        ack: false,
        overflow: false,
        underflow: true,
        status_present: false,
        status: 0x00,
        lun: LUN,
        itt: 0xa0a1_a2a3,
        ttt: 0x77,
        stat_sn: 0x10,
        exp_cmd_sn: 0x20,
        max_cmd_sn: 0x30,
        data_sn: 5,
        buffer_offset: 0x0002_0000,
        residual_count: 100,
        data_segment_len: 0x01_0000,
    }
}

#[test]
fn encodes_data_in_without_status() {
    let mut b = dirty();
    data_in().encode(&mut b);
    assert_eq!(b[0], 0x25);
    // No S: F, O, U and status are all clear.
    assert_eq!(b[1], 0);
    assert_eq!(&b[2..5], &[0, 0, 0]);
    assert_eq!(&b[5..8], &[0x01, 0x00, 0x00]);
    assert_eq!(&b[16..20], &[0xa0, 0xa1, 0xa2, 0xa3]);
    // No A: TTT reserved as 0xffffffff, LUN reserved.
    assert_eq!(be32_at(&b, 20), RESERVED_TAG);
    assert_zero(&b, &[(8, 16)]);
    assert_sequence_numbers(&b, 0, 0x20, 0x30);
    assert_eq!(be32_at(&b, 36), 5);
    assert_eq!(be32_at(&b, 40), 0x0002_0000);
    assert_eq!(be32_at(&b, 44), 0);

    let mut b = dirty();
    DataIn {
        final_pdu: true,
        ..data_in()
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x80);
}

#[test]
fn encodes_data_in_with_status_and_ack() {
    let mut b = dirty();
    DataIn {
        ack: true,
        status_present: true,
        status: 0x02,
        ..data_in()
    }
    .encode(&mut b);
    // S forces F.
    assert_eq!(b[1], 0x80 | 0x40 | 0x02 | 0x01);
    assert_eq!(b[2], 0);
    assert_eq!(b[3], 0x02);
    assert_eq!(&b[8..16], &LUN);
    assert_eq!(be32_at(&b, 20), 0x77);
    assert_sequence_numbers(&b, 0x10, 0x20, 0x30);
    assert_eq!(be32_at(&b, 44), 100);

    let mut b = dirty();
    DataIn {
        status_present: true,
        overflow: true,
        underflow: false,
        ..data_in()
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x80 | 0x04 | 0x01);
    assert_eq!(be32_at(&b, 44), 100);

    let mut b = dirty();
    DataIn {
        status_present: true,
        underflow: false,
        ..data_in()
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x80 | 0x01);
    assert_eq!(be32_at(&b, 44), 0);
}

#[test]
fn encodes_r2t() {
    let mut b = dirty();
    R2t {
        lun: LUN,
        itt: 0x11,
        ttt: 0x22,
        stat_sn: 0x33,
        exp_cmd_sn: 0x44,
        max_cmd_sn: 0x55,
        r2t_sn: 0x66,
        buffer_offset: 0x77,
        desired_data_transfer_length: 0x0004_0000,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x31, 0x80, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[8..16], &LUN);
    assert_eq!(be32_at(&b, 16), 0x11);
    assert_eq!(be32_at(&b, 20), 0x22);
    assert_sequence_numbers(&b, 0x33, 0x44, 0x55);
    assert_eq!(be32_at(&b, 36), 0x66);
    assert_eq!(be32_at(&b, 40), 0x77);
    assert_eq!(be32_at(&b, 44), 0x0004_0000);
}

#[test]
fn encodes_nop_in() {
    let mut b = dirty();
    NopIn {
        lun: LUN,
        itt: RESERVED_TAG,
        ttt: 0x1234,
        stat_sn: 1,
        exp_cmd_sn: 2,
        max_cmd_sn: 3,
        data_segment_len: 0,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x20, 0x80, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[8..16], &LUN);
    assert_eq!(be32_at(&b, 16), RESERVED_TAG);
    assert_eq!(be32_at(&b, 20), 0x1234);
    assert_sequence_numbers(&b, 1, 2, 3);
    assert_zero(&b, &[(36, 48)]);
}

fn login_response() -> LoginResponse {
    LoginResponse {
        transit: true,
        cont: false,
        csg: 1,
        nsg: 3,
        version_max: 0,
        version_active: 0,
        isid: [0x80, 1, 2, 3, 4, 5],
        tsih: 0x0102,
        itt: 0x42,
        stat_sn: 0x10,
        exp_cmd_sn: 0x20,
        max_cmd_sn: 0x30,
        status_class: 0,
        status_detail: 0,
        data_segment_len: 300,
    }
}

#[test]
fn encodes_login_response() {
    let mut b = dirty();
    login_response().encode(&mut b);
    assert_eq!(b[0], 0x23);
    assert_eq!(b[1], 0x80 | 0x04 | 0x03);
    assert_eq!(&b[2..5], &[0, 0, 0]);
    assert_eq!(&b[5..8], &[0, 0x01, 0x2c]);
    assert_eq!(&b[8..14], &[0x80, 1, 2, 3, 4, 5]);
    assert_eq!(&b[14..16], &[0x01, 0x02]);
    assert_eq!(be32_at(&b, 16), 0x42);
    assert_zero(&b, &[(20, 24), (36, 48)]);
    assert_sequence_numbers(&b, 0x10, 0x20, 0x30);

    let mut b = dirty();
    LoginResponse {
        transit: false,
        cont: true,
        csg: 0,
        nsg: 1, // reserved without T
        version_max: 2,
        version_active: 1,
        status_class: 0x02,
        status_detail: 0x01,
        ..login_response()
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x40);
    assert_eq!(&b[2..4], &[2, 1]);
    assert_eq!(&b[36..38], &[0x02, 0x01]);
    assert_zero(&b, &[(38, 48)]);
}

#[test]
fn encodes_text_response() {
    let mut b = dirty();
    TextResponse {
        final_pdu: true,
        cont: false,
        lun: LUN,
        itt: 9,
        ttt: RESERVED_TAG,
        stat_sn: 1,
        exp_cmd_sn: 2,
        max_cmd_sn: 3,
        data_segment_len: 0x00ab_cdef,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x24, 0x80, 0, 0, 0, 0xab, 0xcd, 0xef]);
    assert_eq!(&b[8..16], &LUN);
    assert_eq!(be32_at(&b, 16), 9);
    assert_eq!(be32_at(&b, 20), RESERVED_TAG);
    assert_sequence_numbers(&b, 1, 2, 3);
    assert_zero(&b, &[(36, 48)]);

    let mut b = dirty();
    TextResponse {
        final_pdu: false,
        cont: true,
        lun: [0; 8],
        itt: 9,
        ttt: 0x55,
        stat_sn: 1,
        exp_cmd_sn: 2,
        max_cmd_sn: 3,
        data_segment_len: 8192,
    }
    .encode(&mut b);
    assert_eq!(b[1], 0x40);
    assert_eq!(be32_at(&b, 20), 0x55);
}

#[test]
fn encodes_logout_response() {
    let mut b = dirty();
    LogoutResponse {
        response: 1,
        itt: 0x1000,
        stat_sn: 4,
        exp_cmd_sn: 5,
        max_cmd_sn: 6,
        time2wait: 2,
        time2retain: 20,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x26, 0x80, 1, 0, 0, 0, 0, 0]);
    assert_zero(&b, &[(8, 16), (20, 24), (36, 40), (44, 48)]);
    assert_eq!(be32_at(&b, 16), 0x1000);
    assert_sequence_numbers(&b, 4, 5, 6);
    assert_eq!(&b[40..44], &[0, 2, 0, 20]);
}

#[test]
fn encodes_task_mgmt_response() {
    let mut b = dirty();
    TaskMgmtResponse {
        response: TmfResponse::Rejected as u8,
        itt: 0xabcd,
        stat_sn: 7,
        exp_cmd_sn: 8,
        max_cmd_sn: 9,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x22, 0x80, 0xff, 0, 0, 0, 0, 0]);
    assert_zero(&b, &[(8, 16), (20, 24), (36, 48)]);
    assert_eq!(be32_at(&b, 16), 0xabcd);
    assert_sequence_numbers(&b, 7, 8, 9);
}

#[test]
fn encodes_reject() {
    let mut b = dirty();
    Reject {
        reason: RejectReason::ProtocolError,
        stat_sn: 0x10,
        exp_cmd_sn: 0x11,
        max_cmd_sn: 0x12,
        data_sn_r2t_sn: 0x13,
        data_segment_len: BHS_LEN as u32,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x3f, 0x80, 0x04, 0, 0, 0, 0, 48]);
    assert_eq!(be32_at(&b, 16), 0xffff_ffff);
    assert_zero(&b, &[(8, 16), (20, 24), (40, 48)]);
    assert_sequence_numbers(&b, 0x10, 0x11, 0x12);
    assert_eq!(be32_at(&b, 36), 0x13);
    // The rejected header is the data segment, and its reason is the BhsError's.
    let bad = [0x1cu8; BHS_LEN];
    let e = Bhs::parse(&bad, 8192).unwrap_err();
    Reject {
        reason: e.reject_reason(),
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        data_sn_r2t_sn: 0,
        data_segment_len: 48,
    }
    .encode(&mut b);
    assert_eq!(b[2], 0x05);
}

#[test]
fn encodes_async_message() {
    let mut b = dirty();
    AsyncMessage {
        lun: LUN,
        stat_sn: 1,
        exp_cmd_sn: 2,
        max_cmd_sn: 3,
        async_event: 1,
        async_vcode: 0,
        parameter1: 0x0102,
        parameter2: 3,
        parameter3: 4,
        data_segment_len: 0,
    }
    .encode(&mut b);
    assert_eq!(&b[0..8], &[0x32, 0x80, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[8..16], &LUN);
    assert_eq!(be32_at(&b, 16), 0xffff_ffff);
    assert_zero(&b, &[(20, 24), (44, 48)]);
    assert_sequence_numbers(&b, 1, 2, 3);
    assert_eq!(&b[36..44], &[1, 0, 0x01, 0x02, 0, 3, 0, 4]);
}

#[test]
fn encoded_headers_parse_back_as_target_pdus() {
    // The common parser accepts none of them: they are target opcodes.
    let mut b = dirty();
    NopIn {
        lun: LUN,
        itt: 1,
        ttt: 2,
        stat_sn: 3,
        exp_cmd_sn: 4,
        max_cmd_sn: 5,
        data_segment_len: 6,
    }
    .encode(&mut b);
    assert_eq!(Bhs::parse(&b, 8192), Err(BhsError::UnknownOpcode(0x20)));
    // Data segment length and ITT land where the common fields are.
    b[0] = 0x00;
    let bhs = Bhs::parse(&b, 8192).unwrap();
    assert_eq!(bhs.data_segment_len, 6);
    assert_eq!(bhs.itt, 1);
    assert_eq!(bhs.lun, LUN);
    assert_eq!(bhs.ahs_len, 0);
}

#[test]
fn round_trips_through_mirror_layouts() {
    // A NOP-In echoed as a NOP-Out: same LUN, tags at the same offsets.
    let mut b = dirty();
    NopIn {
        lun: LUN,
        itt: RESERVED_TAG,
        ttt: 0xcafe,
        stat_sn: 3,
        exp_cmd_sn: 4,
        max_cmd_sn: 5,
        data_segment_len: 0,
    }
    .encode(&mut b);
    let out = NopOutPdu::parse(&b);
    assert_eq!((out.lun, out.itt, out.ttt), (LUN, RESERVED_TAG, 0xcafe));

    // An R2T's TTT, LUN, ITT read back at the Data-Out offsets.
    R2t {
        lun: LUN,
        itt: 0x10,
        ttt: 0x20,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        r2t_sn: 0,
        buffer_offset: 0x30,
        desired_data_transfer_length: 0,
    }
    .encode(&mut b);
    let out = DataOutPdu::parse(&b);
    assert_eq!(
        (out.lun, out.itt, out.ttt, out.buffer_offset),
        (LUN, 0x10, 0x20, 0x30)
    );

    // Login Response stage bits, ISID and TSIH at the Login Request offsets.
    login_response().encode(&mut b);
    let login = LoginPdu::parse(&b);
    assert!(login.transit && !login.cont);
    assert_eq!((login.csg, login.nsg), (1, 3));
    assert_eq!(login.isid, [0x80, 1, 2, 3, 4, 5]);
    assert_eq!((login.tsih, login.itt), (0x0102, 0x42));

    // Text Response flags, LUN and tags at the Text Request offsets.
    let response = TextResponse {
        final_pdu: false,
        cont: true,
        lun: LUN,
        itt: 1,
        ttt: 2,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        data_segment_len: 0,
    };
    response.encode(&mut b);
    let text = TextPdu::parse(&b);
    assert_eq!(
        (text.final_pdu, text.cont, text.lun, text.itt, text.ttt),
        (false, true, LUN, 1, 2)
    );
}

#[test]
fn data_segment_length_keeps_24_bits() {
    let mut b = dirty();
    NopIn {
        lun: [0; 8],
        itt: 0,
        ttt: 0,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        data_segment_len: MAX_DATA_SEGMENT_LEN,
    }
    .encode(&mut b);
    assert_eq!(&b[4..8], &[0, 0xff, 0xff, 0xff]);
    assert_eq!(dsl(&b), MAX_DATA_SEGMENT_LEN);
    // Out of contract: the excess bit never reaches TotalAHSLength.
    let mut b = dirty();
    Reject {
        reason: RejectReason::ProtocolError,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        data_sn_r2t_sn: 0,
        data_segment_len: MAX_DATA_SEGMENT_LEN + 1 + 48,
    }
    .encode(&mut b);
    assert_eq!(b[4], 0);
    assert_eq!(dsl(&b), 48);
}

// ---------------------------------------------------------------------------
// Serial number arithmetic.

#[test]
fn serial_numbers_wrap() {
    assert!(sn_lt(1, 2) && !sn_lt(2, 1) && !sn_lt(2, 2));
    assert!(sn_lt(0xffff_fff0, 5));
    assert!(sn_gt(5, 0xffff_fff0));
    assert!(!sn_gt(0xffff_fff0, 5));
    assert!(sn_lt(u32::MAX, 0));
    assert!(sn_le(7, 7) && sn_ge(7, 7));
    assert!(sn_le(0xffff_ffff, 0) && !sn_ge(0xffff_ffff, 0));
    assert!(sn_ge(0, 0xffff_ffff));
    // Largest forward distance still ordered: 2^31 - 1.
    assert!(sn_lt(0, 0x7fff_ffff) && sn_gt(0x7fff_ffff, 0));
    assert!(sn_lt(0x8000_0000, 0xffff_ffff));
    // Exactly 2^31 apart: unordered both ways.
    for (a, b) in [(0, 0x8000_0000), (0x8000_0000, 0), (5, 0x8000_0005)] {
        assert!(!sn_lt(a, b) && !sn_gt(a, b) && !sn_le(a, b) && !sn_ge(a, b));
    }
}

#[test]
fn command_window() {
    assert!(cmd_sn_in_window(10, 10, 10));
    assert!(cmd_sn_in_window(10, 10, 20));
    assert!(cmd_sn_in_window(20, 10, 20));
    assert!(!cmd_sn_in_window(9, 10, 20));
    assert!(!cmd_sn_in_window(21, 10, 20));
    // Across the wrap.
    assert!(cmd_sn_in_window(0xffff_fffe, 0xffff_fff0, 5));
    assert!(cmd_sn_in_window(0, 0xffff_fff0, 5));
    assert!(cmd_sn_in_window(5, 0xffff_fff0, 5));
    assert!(!cmd_sn_in_window(6, 0xffff_fff0, 5));
    assert!(!cmd_sn_in_window(0xffff_ffef, 0xffff_fff0, 5));
    // MaxCmdSN = ExpCmdSN - 1: the window is closed.
    for cmd_sn in [99, 100, 101, 0, u32::MAX, 100 + 0x7fff_ffff] {
        assert!(!cmd_sn_in_window(cmd_sn, 100, 99));
    }
    assert!(!cmd_sn_in_window(0, 1, 0));
}

// ---------------------------------------------------------------------------
// CRC32C: RFC 3720 Appendix B.4 (kept by RFC 7143) test vectors.

#[test]
fn crc32c_test_vectors() {
    let zeros = [0u8; 32];
    let ones = [0xffu8; 32];
    let incrementing: [u8; 32] = core::array::from_fn(|i| i as u8);
    let decrementing: [u8; 32] = core::array::from_fn(|i| 31 - i as u8);
    assert_eq!(iscsi_digest(&[&zeros]), [0xaa, 0x36, 0x91, 0x8a]);
    assert_eq!(iscsi_digest(&[&ones]), [0x43, 0xab, 0xa8, 0x62]);
    assert_eq!(iscsi_digest(&[&incrementing]), [0x4e, 0x79, 0xdd, 0x46]);
    assert_eq!(iscsi_digest(&[&decrementing]), [0x5c, 0xdb, 0x3f, 0x11]);
    // The "123456789" check value of CRC-32C.
    assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
    assert_eq!(iscsi_digest(&[]), [0, 0, 0, 0]);
}

#[test]
fn crc32c_is_incremental() {
    let data: [u8; 100] = core::array::from_fn(|i| (i * 7 + 3) as u8);
    let whole = iscsi_digest(&[&data]);
    for split in [0, 1, 3, 4, 50, 99, 100] {
        let (a, b) = data.split_at(split);
        assert_eq!(iscsi_digest(&[a, b]), whole);
        assert_eq!((!crc32c(crc32c(!0, a), b)).to_le_bytes(), whole);
    }
    assert_eq!(
        iscsi_digest(&[&data[..10], &[], &data[10..60], &data[60..]]),
        whole
    );
    // An empty update leaves the CRC alone.
    assert_eq!(crc32c(0x1234_5678, &[]), 0x1234_5678);
}

#[test]
fn header_digest_of_an_encoded_header() {
    // The digest covers the 48 BHS bytes exactly as sent; any change shows.
    let mut b = dirty();
    scsi_response().encode(&mut b);
    let digest = iscsi_digest(&[&b]);
    b[47] ^= 1;
    assert_ne!(iscsi_digest(&[&b]), digest);
}

#[test]
fn residuals_follow_the_cdb_against_the_expected_length() {
    let none = Residual::default();
    // Read of one 512-byte block with EDTL 0, 200, 512, 10000 (libiscsi's
    // Read10Residuals cases), and two blocks with EDTL of one.
    let over = |count| Residual {
        overflow: true,
        underflow: false,
        count,
    };
    let under = |count| Residual {
        overflow: false,
        underflow: true,
        count,
    };
    assert_eq!(Residual::of(0, Some(512)), over(512));
    assert_eq!(Residual::of(200, Some(512)), over(312));
    assert_eq!(Residual::of(512, Some(512)), none);
    assert_eq!(Residual::of(10000, Some(512)), under(9488));
    assert_eq!(Residual::of(512, Some(1024)), over(512));
    // INQUIRY returning 36 bytes of an allocation length of 255.
    assert_eq!(Residual::of(255, Some(36)), under(219));
    // A command that failed before moving data reports none.
    assert_eq!(Residual::of(4096, None), none);
    // A CDB length beyond 32 bits saturates rather than wraps.
    assert_eq!(Residual::of(1, Some(usize::MAX)), over(u32::MAX - 1));
}

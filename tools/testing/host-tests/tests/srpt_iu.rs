// SPDX-License-Identifier: GPL-2.0

//! SRP information units: built byte by byte as the kernel's ib_srp lays
//! them out (`include/scsi/srp.h`), decoded by srpt/iu.rs.

use scst_host_tests::srpt::iu::*;

fn login_req_ib(it_iu_len: u32, flags: u8) -> [u8; LOGIN_REQ_LEN] {
    let mut b = [0u8; LOGIN_REQ_LEN];
    b[0] = opcode::LOGIN_REQ;
    b[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    b[16..20].copy_from_slice(&it_iu_len.to_be_bytes());
    b[24..26].copy_from_slice(&(buf_fmt::DIRECT | buf_fmt::INDIRECT).to_be_bytes());
    b[26] = flags;
    b[32..48].copy_from_slice(&[0xaa; 16]);
    b[48..64].copy_from_slice(&[0xbb; 16]);
    b
}

#[test]
fn login_request_in_both_layouts() {
    let ib = LoginRequest::parse(&login_req_ib(8260, MULTICHAN_MULTI)).unwrap();
    assert_eq!(ib.tag, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(ib.req_it_iu_len, 8260);
    assert_eq!(ib.req_buf_fmt, buf_fmt::DIRECT | buf_fmt::INDIRECT);
    assert_eq!(ib.multichannel(), MULTICHAN_MULTI);
    assert_eq!(ib.initiator_port_id, [0xaa; 16]);
    assert_eq!(ib.target_port_id, [0xbb; 16]);

    // struct srp_login_req_rdma: tag, buf_fmt, flags, opcode, length, ids.
    let mut r = [0u8; LOGIN_REQ_RDMA_LEN];
    r[0..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    r[8..10].copy_from_slice(&(buf_fmt::DIRECT | buf_fmt::INDIRECT).to_be_bytes());
    r[10] = MULTICHAN_MULTI | IMMED_REQUESTED;
    r[11] = opcode::LOGIN_REQ;
    r[12..16].copy_from_slice(&8260u32.to_be_bytes());
    r[16..32].copy_from_slice(&[0xaa; 16]);
    r[32..48].copy_from_slice(&[0xbb; 16]);
    r[48..50].copy_from_slice(&68u16.to_be_bytes());
    let cm = LoginRequest::parse_rdma_cm(&r).unwrap();
    assert_eq!(cm.req_flags & IMMED_REQUESTED, IMMED_REQUESTED);
    assert_eq!(cm.imm_data_offset, 68);
    assert_eq!(
        LoginRequest {
            req_flags: MULTICHAN_MULTI,
            imm_data_offset: 0,
            ..cm
        },
        ib
    );

    assert_eq!(LoginRequest::parse(&r[..]), Err(IuError::TooShort));
    assert_eq!(
        LoginRequest::parse_rdma_cm(&r[..55]),
        Err(IuError::TooShort)
    );
    r[11] = opcode::CMD;
    assert_eq!(
        LoginRequest::parse_rdma_cm(&r),
        Err(IuError::WrongOpcode(opcode::CMD))
    );
}

#[test]
fn login_response_and_reject() {
    let rsp = LoginResponse {
        tag: [9; 8],
        req_lim_delta: 127,
        max_it_iu_len: 8260,
        max_ti_iu_len: 256,
        buf_fmt: buf_fmt::DIRECT | buf_fmt::INDIRECT,
        rsp_flags: LOGIN_RSP_MULTICHAN_MAINTAINED,
    }
    .encode();
    assert_eq!(rsp[0], opcode::LOGIN_RSP);
    assert_eq!(&rsp[4..8], &127u32.to_be_bytes());
    assert_eq!(&rsp[8..16], &[9; 8]);
    assert_eq!(&rsp[16..20], &8260u32.to_be_bytes());
    assert_eq!(&rsp[20..24], &256u32.to_be_bytes());
    assert_eq!(&rsp[24..26], &6u16.to_be_bytes());
    assert_eq!(rsp[26], LOGIN_RSP_MULTICHAN_MAINTAINED);
    assert!(rsp[27..].iter().all(|&b| b == 0));

    let rej = login_reject([7; 8], reject::REQ_IT_IU_LENGTH_TOO_LARGE, buf_fmt::DIRECT);
    assert_eq!(rej[0], opcode::LOGIN_REJ);
    assert_eq!(&rej[4..8], &0x0001_0002u32.to_be_bytes());
    assert_eq!(&rej[8..16], &[7; 8]);
    assert_eq!(&rej[24..26], &2u16.to_be_bytes());
}

/// An SRP_CMD with `add_cdb` extra CDB bytes and `descs` after it.
fn cmd(fmt: u8, out_cnt: u8, in_cnt: u8, cdb: &[u8], descs: &[u8]) -> Vec<u8> {
    let add = cdb.len().saturating_sub(16);
    let mut b = vec![0u8; CMD_LEN + add];
    b[0] = opcode::CMD;
    b[5] = fmt;
    b[6] = out_cnt;
    b[7] = in_cnt;
    b[8..16].copy_from_slice(&[0x11; 8]);
    b[20..28].copy_from_slice(&[0, 3, 0, 0, 0, 0, 0, 0]);
    b[29] = 2; // ORDERED
    b[31] = add as u8;
    b[32..32 + cdb.len()].copy_from_slice(cdb);
    b.extend_from_slice(descs);
    b
}

fn desc(va: u64, key: u32, len: u32) -> Vec<u8> {
    let mut d = va.to_be_bytes().to_vec();
    d.extend_from_slice(&key.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d
}

#[test]
fn command_with_a_direct_data_in_descriptor() {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x28;
    let b = cmd(desc_fmt::DIRECT, 0, 1, &cdb, &desc(0x1000, 0x42, 4096));
    let c = Command::parse(&b).unwrap();
    assert_eq!(c.tag, [0x11; 8]);
    assert_eq!(c.lun, [0, 3, 0, 0, 0, 0, 0, 0]);
    assert_eq!(c.task_attr, 2);
    assert_eq!(c.cdb, &cdb[..]);
    assert_eq!(c.direction, Direction::In);
    assert_eq!(
        c.data,
        Data::Direct(DirectBuf {
            va: 0x1000,
            key: 0x42,
            len: 4096
        })
    );
    assert_eq!(c.data_len(), 4096);
    // The descriptor cut short.
    assert_eq!(Command::parse(&b[..b.len() - 1]), Err(IuError::TooShort));
}

#[test]
fn command_with_an_indirect_data_out_table_and_a_long_cdb() {
    let cdb: Vec<u8> = (0..32).collect();
    let mut descs = desc(0xdead_0000, 7, 3 * DIRECT_DESC_LEN as u32);
    descs.extend_from_slice(&12288u32.to_be_bytes());
    for i in 0..3u64 {
        descs.extend_from_slice(&desc(0x10000 * (i + 1), 9, 4096));
    }
    let b = cmd(desc_fmt::INDIRECT << 4, 3, 0, &cdb, &descs);
    let c = Command::parse(&b).unwrap();
    assert_eq!(c.cdb, &cdb[..]);
    assert_eq!(c.direction, Direction::Out);
    let Data::Indirect {
        offset,
        count,
        table_count,
        total,
    } = c.data
    else {
        panic!("{:?}", c.data);
    };
    assert_eq!((count, table_count, total), (3, 3, 12288));
    assert_eq!(c.data_len(), 12288);
    for i in 0..3 {
        let d = indirect_desc(&b, offset, i).unwrap();
        assert_eq!(
            d,
            DirectBuf {
                va: 0x10000 * (i as u64 + 1),
                key: 9,
                len: 4096
            }
        );
    }
    assert_eq!(indirect_desc(&b, offset, 3), None);

    // A partial table: two of three descriptors in the unit.
    let b2 = cmd(
        desc_fmt::INDIRECT << 4,
        2,
        0,
        &cdb,
        &descs[..INDIRECT_HDR_LEN + 32],
    );
    let c2 = Command::parse(&b2).unwrap();
    assert!(matches!(
        c2.data,
        Data::Indirect {
            count: 2,
            table_count: 3,
            ..
        }
    ));
    // More descriptors announced than the table holds.
    let b3 = cmd(desc_fmt::INDIRECT << 4, 4, 0, &cdb, &descs);
    assert_eq!(Command::parse(&b3), Err(IuError::BadDescriptorCount));
    // A table whose length is not a whole number of descriptors.
    let mut odd = descs.clone();
    odd[12..16].copy_from_slice(&47u32.to_be_bytes());
    let b4 = cmd(desc_fmt::INDIRECT << 4, 2, 0, &cdb, &odd);
    assert_eq!(Command::parse(&b4), Err(IuError::BadDescriptorCount));
    // Announced descriptors missing from the unit.
    let b5 = cmd(
        desc_fmt::INDIRECT << 4,
        3,
        0,
        &cdb,
        &descs[..INDIRECT_HDR_LEN + 40],
    );
    assert_eq!(Command::parse(&b5), Err(IuError::TooShort));
}

#[test]
fn commands_without_data_bidirectional_and_unknown_formats() {
    let cdb = [0u8; 16];
    let none = cmd(0, 0, 0, &cdb, &[]);
    let c = Command::parse(&none).unwrap();
    assert_eq!(
        (c.direction, c.data, c.data_len()),
        (Direction::None, Data::None, 0)
    );
    let both = cmd(
        desc_fmt::DIRECT << 4 | desc_fmt::DIRECT,
        1,
        1,
        &cdb,
        &desc(0, 0, 0),
    );
    assert_eq!(Command::parse(&both), Err(IuError::Bidirectional));
    let bad = cmd(7, 0, 1, &cdb, &desc(0, 0, 0));
    assert_eq!(Command::parse(&bad), Err(IuError::BadDescriptorFormat(7)));
    // Immediate data only goes out.
    let imm_in = cmd(desc_fmt::IMMEDIATE, 0, 1, &cdb, &[0, 0, 2, 0]);
    assert_eq!(
        Command::parse(&imm_in),
        Err(IuError::BadDescriptorFormat(3))
    );
    let imm = cmd(desc_fmt::IMMEDIATE << 4, 1, 0, &cdb, &[0, 0, 2, 0]);
    assert_eq!(
        Command::parse(&imm).unwrap().data,
        Data::Immediate {
            desc: CMD_LEN,
            len: 512
        }
    );
    // An additional CDB length the unit does not hold.
    let mut short = cmd(0, 0, 0, &cdb, &[]);
    short[31] = 16;
    assert_eq!(Command::parse(&short), Err(IuError::TooShort));
    assert_eq!(
        Command::parse(&[opcode::TSK_MGMT; 64]),
        Err(IuError::WrongOpcode(1))
    );
}

#[test]
fn task_management_and_logout() {
    let mut b = [0u8; TSK_MGMT_LEN];
    b[0] = opcode::TSK_MGMT;
    b[8..16].copy_from_slice(&[5; 8]);
    b[20..28].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    b[30] = tsk::ABORT_TASK;
    b[32..40].copy_from_slice(&[6; 8]);
    let t = TaskMgmt::parse(&b).unwrap();
    assert_eq!(
        (t.tag, t.lun[1], t.function, t.task_tag),
        ([5; 8], 1, tsk::ABORT_TASK, [6; 8])
    );
    assert_eq!(TaskMgmt::parse(&b[..47]), Err(IuError::TooShort));

    let lo = target_logout(0x1234);
    assert_eq!(
        (lo[0], &lo[4..8]),
        (opcode::T_LOGOUT, &0x1234u32.to_be_bytes()[..])
    );
    assert_eq!(tag_of(&[0u8; 15]), None);
}

#[test]
fn response_with_sense_residuals_and_response_data() {
    let sense = [0x70u8; 18];
    let r = Response {
        tag: [3; 8],
        req_lim_delta: 1,
        status: 2,
        data_in_residual: 512,
        data_out_residual: 0,
        sense: &sense,
        response_data: &[],
    };
    let mut out = [0xffu8; 256];
    let n = r.encode(&mut out);
    assert_eq!(n, RSP_LEN + 18);
    assert_eq!(out[0], opcode::RSP);
    assert_eq!(&out[4..8], &1u32.to_be_bytes());
    assert_eq!(&out[8..16], &[3; 8]);
    assert_eq!(out[18], rsp_flag::SNSVALID | rsp_flag::DIUNDER);
    assert_eq!(out[19], 2);
    assert_eq!(&out[20..24], &0u32.to_be_bytes());
    assert_eq!(&out[24..28], &512u32.to_be_bytes());
    assert_eq!(&out[28..32], &18u32.to_be_bytes());
    assert_eq!(&out[32..36], &0u32.to_be_bytes());
    assert_eq!(&out[36..54], &sense);

    // Overflow, and sense cut to the initiator's largest unit.
    let r2 = Response {
        data_in_residual: -4096,
        ..r
    };
    let mut small = [0u8; RSP_LEN + 8];
    assert_eq!(r2.encode(&mut small), RSP_LEN + 8);
    assert_eq!(small[18], rsp_flag::SNSVALID | rsp_flag::DIOVER);
    assert_eq!(&small[24..28], &4096u32.to_be_bytes());
    assert_eq!(&small[28..32], &8u32.to_be_bytes());

    // A task management response: response data, no sense.
    let tm = Response {
        response_data: &[0, 0, 0, tsk_response::NOT_SUPPORTED],
        sense: &[],
        data_in_residual: 0,
        ..r
    };
    let n = tm.encode(&mut out);
    assert_eq!(n, RSP_LEN + 4);
    assert_eq!(out[18], rsp_flag::RSPVALID);
    assert_eq!(&out[32..36], &4u32.to_be_bytes());
    assert_eq!(out[39], tsk_response::NOT_SUPPORTED);
    // No room even for the fixed part.
    assert_eq!(tm.encode(&mut [0u8; RSP_LEN]), 0);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut buf = [0u8; 512];
    for round in 0..20000 {
        for b in buf.iter_mut() {
            *b = next() as u8;
        }
        let len = (next() % 512) as usize;
        buf[0] = [opcode::CMD, opcode::TSK_MGMT, opcode::LOGIN_REQ][round % 3];
        let b = &buf[..len];
        if let Ok(c) = Command::parse(b) {
            assert!(c.cdb.len() >= 16);
            if let Data::Indirect { offset, count, .. } = c.data {
                for i in 0..count {
                    assert!(indirect_desc(b, offset, i).is_some());
                }
            }
        }
        let _ = TaskMgmt::parse(b);
        let _ = LoginRequest::parse(b);
        let _ = LoginRequest::parse_rdma_cm(b);
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Login decisions of srpt/login.rs: SRP-2's checks and ib_srpt's grants.

use scst_host_tests::srpt::iu::*;
use scst_host_tests::srpt::login::*;

const GUID: u64 = 0x0002_c903_00a1_b2c3;

fn limits() -> Limits {
    Limits {
        max_req_size: 8276,
        service_guid: GUID,
        rq_size: 128,
    }
}

fn request(it_iu_len: u32, flags: u8) -> LoginRequest {
    let mut target = [0u8; 16];
    target[..8].copy_from_slice(&GUID.to_be_bytes());
    target[8..].copy_from_slice(&GUID.to_be_bytes());
    LoginRequest {
        tag: [4; 8],
        req_it_iu_len: it_iu_len,
        req_buf_fmt: buf_fmt::DIRECT | buf_fmt::INDIRECT,
        req_flags: flags,
        imm_data_offset: 0,
        initiator_port_id: [0x11; 16],
        target_port_id: target,
    }
}

#[test]
fn a_good_login_is_granted_what_ib_srpt_grants() {
    let g = judge(&request(8260, MULTICHAN_SINGLE), &limits(), false).unwrap();
    assert_eq!(g.response.tag, [4; 8]);
    assert_eq!(g.response.req_lim_delta, 128);
    assert_eq!(g.response.max_it_iu_len, 8276);
    assert_eq!(g.response.max_ti_iu_len, 8260);
    assert_eq!(g.response.buf_fmt, buf_fmt::DIRECT | buf_fmt::INDIRECT);
    assert_eq!(g.response.rsp_flags, LOGIN_RSP_MULTICHAN_NO_CHAN);
    assert!(!g.terminate_others);
    // Not asked for, not granted.
    assert_eq!(g.immediate_offset, None);
}

fn asking_immediate(offset: u16) -> LoginRequest {
    let mut req = request(8260, IMMED_REQUESTED | MULTICHAN_SINGLE);
    req.imm_data_offset = offset;
    req
}

#[test]
fn immediate_data_is_granted_at_the_offset_asked_for() {
    // ib_srp's offset: an SRP_CMD, a 16-byte additional CDB, the
    // immediate descriptor.
    let g = judge(&asking_immediate(68), &limits(), false).unwrap();
    assert_eq!(g.immediate_offset, Some(68));
    assert_eq!(g.response.rsp_flags, LOGIN_RSP_IMMED_SUPP);
    // At the end of the fixed part (a command without additional CDB
    // whose descriptor is then checked per command).
    let g = judge(&asking_immediate(CMD_LEN as u16), &limits(), false).unwrap();
    assert_eq!(g.immediate_offset, Some(CMD_LEN as u16));
    // With another channel kept, both flags.
    let mut multi = asking_immediate(68);
    multi.req_flags = IMMED_REQUESTED | MULTICHAN_MULTI;
    let g = judge(&multi, &limits(), true).unwrap();
    assert_eq!(
        g.response.rsp_flags,
        LOGIN_RSP_IMMED_SUPP | LOGIN_RSP_MULTICHAN_MAINTAINED
    );
    // Inside the fixed part, or where no unit has room: the login goes
    // on without it.
    for offset in [0, 47, 8276, u16::MAX] {
        let g = judge(&asking_immediate(offset), &limits(), false).unwrap();
        assert_eq!(g.immediate_offset, None, "{offset}");
        assert_eq!(g.response.rsp_flags & LOGIN_RSP_IMMED_SUPP, 0, "{offset}");
    }
    // An offset without the request is no request.
    let mut req = request(8260, 0);
    req.imm_data_offset = 68;
    assert_eq!(
        judge(&req, &limits(), false).unwrap().immediate_offset,
        None
    );
}

#[test]
fn other_channels_are_terminated_or_kept_as_asked() {
    let single = judge(&request(8260, MULTICHAN_SINGLE), &limits(), true).unwrap();
    assert_eq!(single.response.rsp_flags, LOGIN_RSP_MULTICHAN_TERMINATED);
    assert!(single.terminate_others);
    let multi = judge(&request(8260, MULTICHAN_MULTI), &limits(), true).unwrap();
    assert_eq!(multi.response.rsp_flags, LOGIN_RSP_MULTICHAN_MAINTAINED);
    assert!(!multi.terminate_others);
    assert_eq!(
        judge(&request(8260, 3), &limits(), true),
        Err(reject::UNABLE_ESTABLISH_CHANNEL)
    );
}

#[test]
fn bad_logins_get_the_reason() {
    assert_eq!(
        judge(&request(8277, 0), &limits(), false),
        Err(reject::REQ_IT_IU_LENGTH_TOO_LARGE)
    );
    assert_eq!(
        judge(&request(63, 0), &limits(), false),
        Err(reject::REQ_IT_IU_LENGTH_TOO_LARGE)
    );
    assert!(judge(&request(64, 0), &limits(), false).is_ok());
    let mut no_fmt = request(8260, 0);
    no_fmt.req_buf_fmt = 0;
    assert_eq!(
        judge(&no_fmt, &limits(), false),
        Err(reject::UNSUPPORTED_DESCRIPTOR_FMT)
    );
    for half in [0, 8] {
        let mut other = request(8260, 0);
        other.target_port_id[half + 7] ^= 1;
        assert_eq!(
            judge(&other, &limits(), false),
            Err(reject::UNABLE_ASSOCIATE_CHANNEL)
        );
    }
}

#[test]
fn initiators_are_named_by_their_port_id() {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&0x0002_c903_000f_e0c1u64.to_be_bytes());
    assert_eq!(&initiator_name(&id), b"0x00000000000000000002c903000fe0c1");
}

#[test]
fn a_shared_receive_queue_never_promises_more_than_it_has() {
    // A login takes at most half of what is left, and its own ring's size.
    assert_eq!(srq_credits(4095, 128), Some(128));
    assert_eq!(srq_credits(64, 128), Some(32));
    assert_eq!(srq_credits(32, 128), Some(16));
    // The least while that many are left, then nothing.
    assert_eq!(srq_credits(3, 128), Some(2));
    assert_eq!(srq_credits(2, 128), Some(2));
    assert_eq!(srq_credits(1, 128), None);
    assert_eq!(srq_credits(0, 128), None);
    // Logins one after another: never more than the queue's units, and
    // every login gets some until fewer than the least are left.
    for units in [4, 16, 64, 4095, 65535] {
        let mut free = units;
        let mut promised = 0;
        while let Some(n) = srq_credits(free, 128) {
            assert!((LEAST_SRQ_CREDITS..=128).contains(&n) && n <= free);
            free -= n;
            promised += n;
        }
        assert!(
            promised <= units && free < LEAST_SRQ_CREDITS,
            "{units}: {free} left"
        );
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The ABI of /dev/scst_user: the module's constants and encodings against
//! the C header shipped for handlers (compiled here with the host's cc).

use scst_host_tests::scst_user::abi::*;
use std::collections::HashMap;
use std::process::Command;

const HEADER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../scst_user/include/scst_user.h"
);

/// Compiles a program that prints `name value` for each expression.
fn c_values(exprs: &[(&str, &str)]) -> HashMap<String, u64> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("scst-user-abi-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"{HEADER}\"\nint main(void) {{\n"
    );
    for (name, expr) in exprs {
        src += &format!("printf(\"{name} %llu\\n\", (unsigned long long)({expr}));\n");
    }
    src += "return 0;\n}\n";
    let c = dir.join("abi.c");
    let exe = dir.join("abi");
    std::fs::write(&c, src).unwrap();
    let out = Command::new("cc")
        .arg("-Wall")
        .arg("-Werror")
        .arg(&c)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn sizes_ioctls_and_subcodes_match_the_header() {
    let v = c_values(&[
        ("opt", "sizeof(struct scst_user_opt)"),
        ("desc", "sizeof(struct scst_user_dev_desc)"),
        ("sess", "sizeof(struct scst_user_sess)"),
        ("exec", "sizeof(struct scst_user_scsi_cmd_exec)"),
        ("get", "sizeof(struct scst_user_get_cmd)"),
        ("reply", "sizeof(struct scst_user_reply_cmd)"),
        ("multi", "sizeof(struct scst_user_get_multi)"),
        ("register", "SCST_USER_REGISTER_DEVICE"),
        ("reply_and_get", "SCST_USER_REPLY_AND_GET_CMD"),
        ("reply_cmd", "SCST_USER_REPLY_CMD"),
        ("get_multi", "SCST_USER_REPLY_AND_GET_MULTI"),
        ("prealloc", "SCST_USER_PREALLOC_BUFFER"),
        ("ext_cdb", "SCST_USER_GET_EXTENDED_CDB"),
        ("flush", "SCST_USER_FLUSH_CACHE"),
        ("attach", "SCST_USER_ATTACH_SESS"),
        ("detach", "SCST_USER_DETACH_SESS"),
        ("alloc", "SCST_USER_ALLOC_MEM"),
        ("exec_sub", "SCST_USER_EXEC"),
        ("on_free", "SCST_USER_ON_FREE_CMD"),
        ("on_cached", "SCST_USER_ON_CACHED_MEM_FREE"),
        ("tm_received", "SCST_USER_TASK_MGMT_RECEIVED"),
        ("tm_done", "SCST_USER_TASK_MGMT_DONE"),
        ("parse", "SCST_USER_PARSE"),
    ]);
    assert_eq!(v["opt"], OPT_SIZE as u64);
    assert_eq!(v["desc"], DEV_DESC_SIZE as u64);
    assert_eq!(v["sess"], SESS_SIZE as u64);
    assert_eq!(v["exec"], EXEC_SIZE as u64);
    assert_eq!(v["get"], GET_CMD_SIZE as u64);
    assert_eq!(v["reply"], REPLY_CMD_SIZE as u64);
    assert_eq!(v["multi"], GET_MULTI_SIZE as u64);
    assert_eq!(v["register"], u64::from(ioctl::REGISTER_DEVICE));
    assert_eq!(v["reply_and_get"], u64::from(ioctl::REPLY_AND_GET_CMD));
    assert_eq!(v["reply_cmd"], u64::from(ioctl::REPLY_CMD));
    assert_eq!(v["get_multi"], u64::from(ioctl::REPLY_AND_GET_MULTI));
    assert_eq!(v["prealloc"], u64::from(ioctl::PREALLOC_BUFFER));
    assert_eq!(v["ext_cdb"], u64::from(ioctl::GET_EXTENDED_CDB));
    assert_eq!(v["flush"], u64::from(ioctl::FLUSH_CACHE));
    assert_eq!(v["attach"], u64::from(subcode::ATTACH_SESS));
    assert_eq!(v["detach"], u64::from(subcode::DETACH_SESS));
    assert_eq!(v["alloc"], u64::from(subcode::ALLOC_MEM));
    assert_eq!(v["exec_sub"], u64::from(subcode::EXEC));
    assert_eq!(v["on_free"], u64::from(subcode::ON_FREE_CMD));
    assert_eq!(v["on_cached"], u64::from(subcode::ON_CACHED_MEM_FREE));
    assert_eq!(v["tm_received"], u64::from(subcode::TASK_MGMT_RECEIVED));
    assert_eq!(v["tm_done"], u64::from(subcode::TASK_MGMT_DONE));
    assert_eq!(v["parse"], u64::from(subcode::PARSE));
    for (name, value) in [
        ("SCST_ABORT_TASK", tm_fn::ABORT_TASK),
        ("SCST_ABORT_TASK_SET", tm_fn::ABORT_TASK_SET),
        ("SCST_CLEAR_TASK_SET", tm_fn::CLEAR_TASK_SET),
        ("SCST_LUN_RESET", tm_fn::LUN_RESET),
        ("SCST_TARGET_RESET", tm_fn::TARGET_RESET),
    ] {
        assert_eq!(c_values(&[("v", name)])["v"], u64::from(value), "{name}");
    }
}

#[test]
fn field_offsets_match_the_header() {
    let v = c_values(&[
        ("desc_type", "offsetof(struct scst_user_dev_desc, type)"),
        ("desc_opt", "offsetof(struct scst_user_dev_desc, opt)"),
        ("desc_bs", "offsetof(struct scst_user_dev_desc, block_size)"),
        ("desc_name", "offsetof(struct scst_user_dev_desc, name)"),
        ("opt_d_sense", "offsetof(struct scst_user_opt, d_sense)"),
        (
            "get_exec_pbuf",
            "offsetof(struct scst_user_get_cmd, exec_cmd.pbuf)",
        ),
        (
            "get_exec_lba",
            "offsetof(struct scst_user_get_cmd, exec_cmd.lba)",
        ),
        (
            "get_exec_timeout",
            "offsetof(struct scst_user_get_cmd, exec_cmd.timeout)",
        ),
        (
            "get_exec_sn",
            "offsetof(struct scst_user_get_cmd, exec_cmd.sn)",
        ),
        (
            "get_alloc_len",
            "offsetof(struct scst_user_get_cmd, alloc_cmd.alloc_len)",
        ),
        (
            "get_sess_target",
            "offsetof(struct scst_user_get_cmd, sess.target_name)",
        ),
        (
            "get_sess_rd_only",
            "offsetof(struct scst_user_get_cmd, sess.rd_only)",
        ),
        (
            "get_free_status",
            "offsetof(struct scst_user_get_cmd, on_free_cmd.status)",
        ),
        (
            "reply_status",
            "offsetof(struct scst_user_reply_cmd, exec_reply.status)",
        ),
        (
            "reply_sense_len",
            "offsetof(struct scst_user_reply_cmd, exec_reply.sense_len)",
        ),
        (
            "reply_psense",
            "offsetof(struct scst_user_reply_cmd, exec_reply.psense_buffer)",
        ),
        ("multi_cmds", "offsetof(struct scst_user_get_multi, cmds)"),
        ("tm_fn", "offsetof(struct scst_user_get_cmd, tm_cmd.fn)"),
        (
            "tm_abort",
            "offsetof(struct scst_user_get_cmd, tm_cmd.cmd_h_to_abort)",
        ),
    ]);
    let u = UNION_OFFSET as u64;
    assert_eq!(v["desc_type"], 16);
    assert_eq!(v["desc_opt"], 28);
    assert_eq!(v["desc_bs"], 48);
    assert_eq!(v["desc_name"], 53);
    assert_eq!(v["opt_d_sense"], 14);
    assert_eq!(v["get_exec_pbuf"], u + 56);
    assert_eq!(v["get_exec_lba"], u + 32);
    assert_eq!(v["get_exec_timeout"], u + 68);
    assert_eq!(v["get_exec_sn"], u + 84);
    assert_eq!(v["get_alloc_len"], u + 28);
    assert_eq!(v["get_sess_target"], u + 24 + MAX_EXTERNAL_NAME as u64);
    assert_eq!(v["get_sess_rd_only"], u + 18);
    assert_eq!(v["get_free_status"], u + 14);
    assert_eq!(v["reply_status"], u + 17);
    assert_eq!(v["reply_sense_len"], u + 24);
    assert_eq!(v["reply_psense"], u + 32);
    assert_eq!(v["multi_cmds"], GET_MULTI_SIZE as u64);
    assert_eq!(v["tm_fn"], u + 8);
    assert_eq!(v["tm_abort"], u + 12);
}

#[test]
fn parse_encoding_and_reply_decoding() {
    let v = c_values(&[
        ("lba", "offsetof(struct scst_user_get_cmd, parse_cmd.lba)"),
        (
            "bufflen",
            "offsetof(struct scst_user_get_cmd, parse_cmd.bufflen)",
        ),
        (
            "flags",
            "offsetof(struct scst_user_get_cmd, parse_cmd.op_flags)",
        ),
        (
            "dir",
            "offsetof(struct scst_user_get_cmd, parse_cmd.data_direction)",
        ),
        (
            "exp_dir",
            "offsetof(struct scst_user_get_cmd, parse_cmd.expected_data_direction)",
        ),
        (
            "exp_len",
            "offsetof(struct scst_user_get_cmd, parse_cmd.expected_transfer_len)",
        ),
        (
            "r_status",
            "offsetof(struct scst_user_reply_cmd, parse_reply.status)",
        ),
        (
            "r_dir",
            "offsetof(struct scst_user_reply_cmd, parse_reply.data_direction)",
        ),
        (
            "r_cdb_len",
            "offsetof(struct scst_user_reply_cmd, parse_reply.cdb_len)",
        ),
        (
            "r_lba",
            "offsetof(struct scst_user_reply_cmd, parse_reply.lba)",
        ),
        (
            "r_bufflen",
            "offsetof(struct scst_user_reply_cmd, parse_reply.bufflen)",
        ),
        (
            "r_flags",
            "offsetof(struct scst_user_reply_cmd, parse_reply.op_flags)",
        ),
        (
            "r_out",
            "offsetof(struct scst_user_reply_cmd, parse_reply.out_bufflen)",
        ),
        (
            "r_sense_len",
            "offsetof(struct scst_user_reply_cmd, parse_reply.sense_len)",
        ),
        (
            "r_psense",
            "offsetof(struct scst_user_reply_cmd, parse_reply.psense_buffer)",
        ),
    ]);
    let cdb = [0x2a, 0, 0, 0, 0, 9, 0, 0, 8, 0];
    let mut b = [0xffu8; GET_CMD_SIZE];
    ToUser::Parse(Parse {
        sess_h: 5,
        cdb: &cdb,
        lba: 9,
        bufflen: 4096,
        timeout: 60,
        queue_type: queue::SIMPLE,
        data_direction: dir::WRITE,
    })
    .encode(11, &mut b);
    assert_eq!(u32_at(&b, 4), subcode::PARSE);
    let at = |k: &str| v[k] as usize;
    assert_eq!(u64_at(&b, at("lba")), 9);
    assert_eq!(u32_at(&b, at("bufflen")), 4096);
    assert_eq!(u32_at(&b, at("flags")), op_flags::INFO_VALID);
    assert_eq!((b[at("dir")], b[at("exp_dir")]), (dir::WRITE, dir::WRITE));
    assert_eq!(b[at("exp_dir") - 1], 1, "expected_values_set");
    assert_eq!(u32_at(&b, at("exp_len")), 4096);
    assert!(b[8 + PARSE_SIZE..].iter().all(|&x| x == 0));

    let mut r = [0u8; REPLY_CMD_SIZE];
    r[at("r_dir")] = dir::READ;
    r[at("r_cdb_len")..at("r_cdb_len") + 2].copy_from_slice(&10u16.to_ne_bytes());
    r[at("r_lba")..at("r_lba") + 8].copy_from_slice(&7i64.to_ne_bytes());
    r[at("r_bufflen")..at("r_bufflen") + 4].copy_from_slice(&512i32.to_ne_bytes());
    r[at("r_flags")..at("r_flags") + 4].copy_from_slice(&op_flags::INFO_VALID.to_ne_bytes());
    r[at("r_out")..at("r_out") + 4].copy_from_slice(&3i32.to_ne_bytes());
    let p = Reply::decode(&r).parse();
    assert_eq!(
        (
            p.status,
            p.data_direction,
            p.cdb_len,
            p.lba,
            p.bufflen,
            p.out_bufflen
        ),
        (0, dir::READ, 10, 7, 512, 3)
    );
    assert!(p.is_valid(10));
    assert!(!p.is_valid(6), "a longer CDB than the command's");
    r[at("r_flags")] = 0;
    assert!(!Reply::decode(&r).parse().is_valid(10), "INFO_VALID unset");
    r[at("r_status")] = 2;
    r[at("r_sense_len")] = 18;
    r[at("r_psense")..at("r_psense") + 8].copy_from_slice(&0x5000u64.to_ne_bytes());
    let p = Reply::decode(&r).parse();
    assert_eq!((p.status, p.sense_len, p.psense_buffer), (2, 18, 0x5000));
}

#[test]
fn task_management_encoding() {
    let mut b = [0xffu8; GET_CMD_SIZE];
    let tm = |done| ToUser::TaskMgmt {
        done,
        sess_h: 3,
        function: tm_fn::ABORT_TASK,
        cmd_h_to_abort: 41,
    };
    tm(false).encode(42, &mut b);
    assert_eq!(u32_at(&b, 0), 42);
    assert_eq!(u32_at(&b, 4), subcode::TASK_MGMT_RECEIVED);
    assert_eq!(u64_at(&b, 8), 3);
    assert_eq!(u32_at(&b, 16), tm_fn::ABORT_TASK);
    assert_eq!(u32_at(&b, 20), 41);
    assert!(
        b[24..].iter().all(|&x| x == 0),
        "cmd_sn unset, the rest zeroed"
    );
    tm(true).encode(43, &mut b);
    assert_eq!(u32_at(&b, 4), subcode::TASK_MGMT_DONE);
}

#[test]
fn exec_encoding_and_reply_decoding() {
    let cdb = [0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0];
    let mut b = [0xffu8; GET_CMD_SIZE];
    ToUser::Exec(Exec {
        sess_h: 7,
        cdb: &cdb,
        lba: disk_lba(&cdb),
        data_len: 4096,
        bufflen: 4096,
        alloc_len: 4096,
        pbuf: 0x7000_0000,
        queue_type: queue::SIMPLE,
        data_direction: dir::READ,
        timeout: 60,
        sn: 0,
    })
    .encode(9, &mut b);
    assert_eq!(u32_at(&b, 0), 9);
    assert_eq!(u32_at(&b, 4), subcode::EXEC);
    assert_eq!(u64_at(&b, 8), 7);
    assert_eq!(&b[16..26], &cdb);
    assert_eq!(b[26..32], [0; 6], "the CDB field is zero-padded");
    assert_eq!(u16::from_ne_bytes([b[32], b[33]]), 10, "cdb_len");
    assert_eq!(u64_at(&b, 8 + 32), 0x1234);
    assert_eq!(u64_at(&b, 8 + 56), 0x7000_0000);
    assert_eq!(b[8 + 65], dir::READ);
    assert!(b[8 + 104..].iter().all(|&x| x == 0), "the rest is zeroed");

    let mut r = [0u8; REPLY_CMD_SIZE];
    r[0..4].copy_from_slice(&9u32.to_ne_bytes());
    r[4..8].copy_from_slice(&subcode::EXEC.to_ne_bytes());
    r[8..12].copy_from_slice(&512i32.to_ne_bytes());
    r[25] = 0x02;
    r[32] = 18;
    r[40..48].copy_from_slice(&0x1000u64.to_ne_bytes());
    let e = Reply::decode(&r).exec();
    assert_eq!(
        (e.resp_data_len, e.status, e.sense_len, e.psense_buffer),
        (512, 2, 18, 0x1000)
    );
}

#[test]
fn options_are_checked_and_round_trip() {
    let mut raw = [0u8; OPT_SIZE];
    let o = Options {
        memory_reuse_type: mem_reuse::ALL,
        on_free_cmd_type: on_free::IGNORE,
        d_sense: 1,
        qerr: 3,
        ..Options::default()
    };
    o.encode(&mut raw);
    assert_eq!(Options::decode(&raw), o);
    assert_eq!(o.validate(), Ok(()));
    assert_eq!(Options { parse_type: 3, ..o }.validate(), Err("parse_type"));
    assert_eq!(Options { qerr: 2, ..o }.validate(), Err("qerr"));
    assert_eq!(
        Options {
            partial_len: -1,
            ..o
        }
        .validate(),
        Err("partial_len")
    );
}

#[test]
fn device_names_are_checked() {
    let desc = |name: &[u8]| {
        let mut raw = [0u8; DEV_DESC_SIZE];
        raw[53..53 + name.len()].copy_from_slice(name);
        DevDesc::decode(&raw)
    };
    assert_eq!(desc(b"vtape0").name(), Some("vtape0"));
    assert_eq!(desc(b"").name(), None);
    assert_eq!(desc(b"a/b").name(), None);
    assert_eq!(desc(b"a b").name(), None);
    assert_eq!(desc(&[b'x'; MAX_NAME]).name(), None, "no NUL");
}

#[test]
fn random_replies_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10_000 {
        let mut r = [0u8; REPLY_CMD_SIZE];
        for b in r.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let reply = Reply::decode(&r);
        let _ = (
            reply.exec(),
            reply.alloc_pbuf(),
            reply.result(),
            valid_status(r[25]),
        );
        let _ = DevDesc::decode(&r).name();
        let _ = GetMulti::decode(&r);
        let _ = disk_lba(&r[..(r[0] % 20) as usize]);
    }
}

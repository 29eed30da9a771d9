// SPDX-License-Identifier: GPL-2.0

//! The `scst_user.h` ABI: ioctl numbers, struct sizes and field offsets of
//! SCST 3.x on 64-bit Linux, and the encoding of the structures that cross
//! the boundary. Plain `core` Rust, shared with the host test crate, which
//! checks every offset against the C header shipped in
//! `scst_user/include/scst_user.h`.

/// Longest CDB carried inline.
pub const MAX_CDB_SIZE: usize = 16;
/// Device name length, with its NUL.
pub const MAX_NAME: usize = 50;
/// Initiator and target name length, with the NUL.
pub const MAX_EXTERNAL_NAME: usize = 256;
/// Longest sense a handler may return.
pub const SENSE_BUFFERSIZE: usize = 252;

/// `parse_type` values.
pub mod parse {
    pub const STANDARD: u8 = 0;
    pub const CALL: u8 = 1;
    pub const EXCEPTION: u8 = 2;
}
/// `on_free_cmd_type` values.
pub mod on_free {
    pub const CALL: u8 = 0;
    pub const IGNORE: u8 = 1;
}
/// `memory_reuse_type` values.
pub mod mem_reuse {
    pub const NONE: u8 = 0;
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const ALL: u8 = 3;
}
/// `partial_transfers_type` values.
pub mod partial {
    pub const NOT_SUPPORTED: u8 = 0;
    pub const SUPPORTED_ORDERED: u8 = 1;
    pub const SUPPORTED: u8 = 2;
}
/// `data_direction` values (SCST's `scst_data_direction`).
pub mod dir {
    pub const UNKNOWN: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const READ: u8 = 2;
    pub const BIDI: u8 = 3;
    pub const NONE: u8 = 4;
}
/// `queue_type` values (SCST's `scst_cmd_queue_type`).
pub mod queue {
    pub const UNTAGGED: u8 = 0;
    pub const SIMPLE: u8 = 1;
    pub const ORDERED: u8 = 2;
    pub const HEAD_OF_QUEUE: u8 = 3;
    pub const ACA: u8 = 4;
}
/// `reply_type` of an EXEC reply.
pub mod reply_type {
    pub const BACKGROUND: u8 = 0;
    pub const COMPLETED: u8 = 1;
    pub const DO_WRITE_SAME: u8 = 2;
}
/// How this architecture encodes ioctl numbers (`_IOC_*` of its
/// `asm/ioctl.h`): the module that includes this file provides it, from the
/// kernel's bindings in scst.ko.
use super::ioc_encoding as enc;

const IOC_WRITE: u32 = enc::WRITE;
const IOC_READ: u32 = enc::READ;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u8, nr: u32, size: usize) -> u32 {
    (dir << enc::DIRSHIFT)
        | ((size as u32) << enc::SIZESHIFT)
        | ((ty as u32) << enc::TYPESHIFT)
        | (nr << enc::NRSHIFT)
}

/// `sizeof(struct scst_user_opt)`.
pub const OPT_SIZE: usize = 20;
/// `sizeof(struct scst_user_dev_desc)`.
pub const DEV_DESC_SIZE: usize = 160;
/// `sizeof(struct scst_user_sess)`.
pub const SESS_SIZE: usize = 536;
/// `sizeof(struct scst_user_scsi_cmd_parse)`.
pub const PARSE_SIZE: usize = 80;
/// `sizeof(struct scst_user_scsi_cmd_alloc_mem)`.
pub const ALLOC_MEM_SIZE: usize = 40;
/// `sizeof(struct scst_user_scsi_cmd_exec)`.
pub const EXEC_SIZE: usize = 104;
/// `sizeof(struct scst_user_scsi_on_free_cmd)`.
pub const ON_FREE_SIZE: usize = 16;
/// `sizeof(struct scst_user_on_cached_mem_free)`.
pub const ON_CACHED_MEM_FREE_SIZE: usize = 8;
/// `sizeof(struct scst_user_tm)`.
pub const TM_SIZE: usize = 24;
/// `sizeof(struct scst_user_ext_copy_remap)`.
pub const EXT_COPY_REMAP_SIZE: usize = 48;
/// `sizeof(struct scst_user_get_cmd)`.
pub const GET_CMD_SIZE: usize = 544;
/// `sizeof(struct scst_user_reply_cmd)`.
pub const REPLY_CMD_SIZE: usize = 56;
/// `sizeof(struct scst_user_get_ext_cdb)`.
pub const GET_EXT_CDB_SIZE: usize = 16;
/// `sizeof(union scst_user_prealloc_buffer)`.
pub const PREALLOC_SIZE: usize = 16;
/// `sizeof(struct scst_user_get_multi)` (without its `cmds`).
pub const GET_MULTI_SIZE: usize = 16;
/// Where the union of `scst_user_get_cmd` and `scst_user_reply_cmd` starts.
pub const UNION_OFFSET: usize = 8;

/// The ioctls of `/dev/scst_user`.
pub mod ioctl {
    use super::*;
    pub const REGISTER_DEVICE: u32 = ioc(IOC_WRITE, b'u', 1, DEV_DESC_SIZE);
    pub const UNREGISTER_DEVICE: u32 = ioc(0, b'u', 2, 0);
    pub const SET_OPTIONS: u32 = ioc(IOC_WRITE, b'u', 3, OPT_SIZE);
    pub const GET_OPTIONS: u32 = ioc(IOC_READ, b'u', 4, OPT_SIZE);
    pub const REPLY_AND_GET_CMD: u32 = ioc(IOC_READ | IOC_WRITE, b'u', 5, GET_CMD_SIZE);
    pub const REPLY_CMD: u32 = ioc(IOC_WRITE, b'u', 6, REPLY_CMD_SIZE);
    pub const FLUSH_CACHE: u32 = ioc(0, b'u', 7, 0);
    pub const DEVICE_CAPACITY_CHANGED: u32 = ioc(0, b'u', 8, 0);
    pub const GET_EXTENDED_CDB: u32 = ioc(IOC_READ | IOC_WRITE, b'u', 9, GET_EXT_CDB_SIZE);
    pub const PREALLOC_BUFFER: u32 = ioc(IOC_READ | IOC_WRITE, b'u', 10, PREALLOC_SIZE);
    pub const REPLY_AND_GET_MULTI: u32 = ioc(IOC_READ | IOC_WRITE, b'u', 11, GET_MULTI_SIZE);
}

/// The `subcode`s of the commands the kernel hands out.
/// Task management functions (`fn` of `struct scst_user_tm`, SCST's
/// `scst_const.h`).
pub mod tm_fn {
    pub const ABORT_TASK: u32 = 0;
    pub const ABORT_TASK_SET: u32 = 1;
    pub const CLEAR_TASK_SET: u32 = 3;
    pub const LUN_RESET: u32 = 4;
    pub const TARGET_RESET: u32 = 5;
}

pub mod subcode {
    use super::*;
    pub const ATTACH_SESS: u32 = ioc(IOC_READ, b's', 0x20, SESS_SIZE);
    pub const DETACH_SESS: u32 = ioc(IOC_READ, b's', 0x21, SESS_SIZE);
    pub const PARSE: u32 = ioc(IOC_READ | IOC_WRITE, b's', 1, PARSE_SIZE);
    pub const ALLOC_MEM: u32 = ioc(IOC_READ | IOC_WRITE, b's', 2, ALLOC_MEM_SIZE);
    pub const EXEC: u32 = ioc(IOC_READ | IOC_WRITE, b's', 3, EXEC_SIZE);
    pub const ON_FREE_CMD: u32 = ioc(IOC_READ, b's', 4, ON_FREE_SIZE);
    pub const ON_CACHED_MEM_FREE: u32 = ioc(IOC_READ, b's', 5, ON_CACHED_MEM_FREE_SIZE);
    pub const EXT_COPY_REMAP: u32 = ioc(IOC_READ | IOC_WRITE, b's', 6, EXT_COPY_REMAP_SIZE);
    pub const TASK_MGMT_RECEIVED: u32 = ioc(IOC_READ | IOC_WRITE, b's', 8, TM_SIZE);
    pub const TASK_MGMT_DONE: u32 = ioc(IOC_READ | IOC_WRITE, b's', 9, TM_SIZE);
}

fn get<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        out.copy_from_slice(s);
    }
    out
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

/// Reads a native-endian `u64` at `at` (0 past the end).
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(get(b, at))
}

/// Reads a native-endian `u32` at `at`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(get(b, at))
}

/// Reads a native-endian `i32` at `at`.
pub fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(get(b, at))
}

/// Reads a native-endian `i16` at `at`.
pub fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_ne_bytes(get(b, at))
}

fn u8_at(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// `struct scst_user_opt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub parse_type: u8,
    pub on_free_cmd_type: u8,
    pub memory_reuse_type: u8,
    pub partial_transfers_type: u8,
    pub partial_len: i32,
    pub tst: u8,
    pub tmf_only: u8,
    pub queue_alg: u8,
    pub qerr: u8,
    pub tas: u8,
    pub swp: u8,
    pub d_sense: u8,
    pub has_own_order_mgmt: u8,
    pub ext_copy_remap_supported: u8,
}

impl Options {
    /// Decodes the structure at the start of `b`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            parse_type: u8_at(b, 0),
            on_free_cmd_type: u8_at(b, 1),
            memory_reuse_type: u8_at(b, 2),
            partial_transfers_type: u8_at(b, 3),
            partial_len: i32_at(b, 4),
            tst: u8_at(b, 8),
            tmf_only: u8_at(b, 9),
            queue_alg: u8_at(b, 10),
            qerr: u8_at(b, 11),
            tas: u8_at(b, 12),
            swp: u8_at(b, 13),
            d_sense: u8_at(b, 14),
            has_own_order_mgmt: u8_at(b, 15),
            ext_copy_remap_supported: u8_at(b, 16),
        }
    }

    /// Encodes into the first [`OPT_SIZE`] bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        put(
            b,
            0,
            &[
                self.parse_type,
                self.on_free_cmd_type,
                self.memory_reuse_type,
                self.partial_transfers_type,
            ],
        );
        put(b, 4, &self.partial_len.to_ne_bytes());
        put(
            b,
            8,
            &[
                self.tst,
                self.tmf_only,
                self.queue_alg,
                self.qerr,
                self.tas,
                self.swp,
                self.d_sense,
                self.has_own_order_mgmt,
                self.ext_copy_remap_supported,
                0,
                0,
                0,
            ],
        );
    }

    /// Checks every field's range; the error names the first bad field.
    pub fn validate(&self) -> Result<(), &'static str> {
        let checks: [(bool, &'static str); 13] = [
            (self.parse_type <= parse::EXCEPTION, "parse_type"),
            (self.on_free_cmd_type <= on_free::IGNORE, "on_free_cmd_type"),
            (
                self.memory_reuse_type <= mem_reuse::ALL,
                "memory_reuse_type",
            ),
            (
                self.partial_transfers_type <= partial::SUPPORTED,
                "partial_transfers_type",
            ),
            (self.partial_len >= 0, "partial_len"),
            (self.tst <= 1, "tst"),
            (self.tmf_only <= 1, "tmf_only"),
            (self.queue_alg <= 1, "queue_alg"),
            (matches!(self.qerr, 0 | 1 | 3), "qerr"),
            (self.tas <= 1, "tas"),
            (self.swp <= 1, "swp"),
            (self.d_sense <= 1, "d_sense"),
            (
                self.has_own_order_mgmt <= 1 && self.ext_copy_remap_supported <= 1,
                "has_own_order_mgmt/ext_copy_remap_supported",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, field)) => Err(field),
            None => Ok(()),
        }
    }
}

/// `struct scst_user_dev_desc`.
#[derive(Clone, Copy, Debug)]
pub struct DevDesc {
    pub version_str: u64,
    pub license_str: u64,
    pub dev_type: u8,
    pub opt: Options,
    pub block_size: u32,
    pub name: [u8; MAX_NAME],
}

impl DevDesc {
    /// Decodes the structure at the start of `b`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            version_str: u64_at(b, 0),
            license_str: u64_at(b, 8),
            dev_type: u8_at(b, 16),
            opt: Options::decode(b.get(28..).unwrap_or(&[])),
            block_size: u32_at(b, 48),
            name: get(b, 53),
        }
    }

    /// The name, if it is NUL-terminated, non-empty and made of characters
    /// a sysfs name and an `mgmt` line can carry.
    pub fn name(&self) -> Option<&str> {
        let len = self.name.iter().position(|&c| c == 0)?;
        let name = core::str::from_utf8(self.name.get(..len)?).ok()?;
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && name.bytes().all(|c| c.is_ascii_graphic() && c != b'/');
        ok.then_some(name)
    }
}

/// The license strings a handler may declare, as SCST accepts them.
pub const LICENSES: [&[u8]; 5] = [
    b"GPL",
    b"GPL v2",
    b"Dual BSD/GPL",
    b"Dual MIT/GPL",
    b"Dual MPL/GPL",
];

/// The version prefix a handler must declare: the ABI of SCST 3.
pub const VERSION_PREFIX: &[u8] = b"3.";

/// One command or notification for the handler (the union of
/// `scst_user_get_cmd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToUser<'a> {
    /// A new I_T_L nexus, or one that ended.
    Sess {
        detach: bool,
        sess_h: u64,
        lun: u64,
        read_only: bool,
        /// Commands of the device the core executes at once.
        threads_num: u16,
        initiator: &'a [u8],
        target: &'a [u8],
    },
    /// Allocate a buffer of `alloc_len` bytes for a command.
    AllocMem {
        sess_h: u64,
        cdb: &'a [u8],
        alloc_len: i32,
        queue_type: u8,
        data_direction: u8,
        sn: u32,
    },
    /// Check a command and say how much data it moves, which way.
    Parse(Parse<'a>),
    /// Execute a command.
    Exec(Exec<'a>),
    /// A command ended.
    OnFree {
        pbuf: u64,
        resp_data_len: i32,
        buffer_cached: bool,
        aborted: bool,
        status: u8,
    },
    /// A cached buffer is no longer used.
    OnCachedMemFree { pbuf: u64 },
    /// Task management of a nexus: RECEIVED before the core waits for the
    /// commands it affects, DONE after. `cmd_h_to_abort` is the handle of
    /// the command an ABORT TASK names (0 if the process never saw it).
    TaskMgmt {
        done: bool,
        sess_h: u64,
        function: u32,
        cmd_h_to_abort: u32,
    },
}

/// `struct scst_user_scsi_cmd_parse`, as the kernel fills it: the
/// transport's direction and length are both the proposal and the
/// expected values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    pub sess_h: u64,
    pub cdb: &'a [u8],
    pub lba: i64,
    pub bufflen: i32,
    pub timeout: i32,
    pub queue_type: u8,
    pub data_direction: u8,
}

/// `scst_cdb_flags` bits of a PARSE (SCST's `scst_const.h`).
pub mod op_flags {
    /// The other bits are meaningful; a PARSE reply must set it.
    pub const INFO_VALID: u32 = 0x0020;
}

/// Highest `queue_type` (ACA).
pub const MAX_QUEUE_TYPE: u8 = 4;

/// `struct scst_user_scsi_cmd_exec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exec<'a> {
    pub sess_h: u64,
    /// The CDB (up to [`MAX_CDB_SIZE`] bytes are carried inline).
    pub cdb: &'a [u8],
    pub lba: i64,
    pub data_len: i64,
    pub bufflen: i32,
    pub alloc_len: i32,
    pub pbuf: u64,
    pub queue_type: u8,
    pub data_direction: u8,
    pub timeout: i32,
    pub sn: u32,
}

fn put_cdb(b: &mut [u8], at: usize, cdb: &[u8], len_at: usize) {
    let inline = cdb.get(..cdb.len().min(MAX_CDB_SIZE)).unwrap_or(&[]);
    put(b, at, inline);
    put(b, len_at, &(cdb.len() as u16).to_ne_bytes());
}

fn put_name(b: &mut [u8], at: usize, name: &[u8]) {
    let n = name.len().min(MAX_EXTERNAL_NAME - 1);
    put(b, at, name.get(..n).unwrap_or(&[]));
}

impl ToUser<'_> {
    /// The `subcode` of this message.
    pub fn subcode(&self) -> u32 {
        match self {
            Self::Sess { detach: false, .. } => subcode::ATTACH_SESS,
            Self::Sess { detach: true, .. } => subcode::DETACH_SESS,
            Self::AllocMem { .. } => subcode::ALLOC_MEM,
            Self::Parse(_) => subcode::PARSE,
            Self::Exec(_) => subcode::EXEC,
            Self::OnFree { .. } => subcode::ON_FREE_CMD,
            Self::OnCachedMemFree { .. } => subcode::ON_CACHED_MEM_FREE,
            Self::TaskMgmt { done: false, .. } => subcode::TASK_MGMT_RECEIVED,
            Self::TaskMgmt { done: true, .. } => subcode::TASK_MGMT_DONE,
        }
    }

    /// Encodes `struct scst_user_get_cmd` for `cmd_h` into `b` (at least
    /// [`GET_CMD_SIZE`] bytes; the rest is zeroed).
    pub fn encode(&self, cmd_h: u32, b: &mut [u8]) {
        b.fill(0);
        put(b, 0, &cmd_h.to_ne_bytes());
        put(b, 4, &self.subcode().to_ne_bytes());
        let u = UNION_OFFSET;
        match *self {
            Self::Sess {
                sess_h,
                lun,
                read_only,
                threads_num,
                initiator,
                target,
                ..
            } => {
                put(b, u, &sess_h.to_ne_bytes());
                put(b, u + 8, &lun.to_ne_bytes());
                put(b, u + 16, &threads_num.to_ne_bytes());
                put(b, u + 18, &[u8::from(read_only)]);
                put_name(b, u + 24, initiator);
                put_name(b, u + 24 + MAX_EXTERNAL_NAME, target);
            }
            Self::AllocMem {
                sess_h,
                cdb,
                alloc_len,
                queue_type,
                data_direction,
                sn,
            } => {
                put(b, u, &sess_h.to_ne_bytes());
                put_cdb(b, u + 8, cdb, u + 24);
                put(b, u + 28, &alloc_len.to_ne_bytes());
                put(b, u + 32, &[queue_type, data_direction]);
                put(b, u + 36, &sn.to_ne_bytes());
            }
            Self::Parse(p) => {
                put(b, u, &p.sess_h.to_ne_bytes());
                put_cdb(b, u + 8, p.cdb, u + 24);
                put(b, u + 32, &p.lba.to_ne_bytes());
                put(b, u + 40, &i64::from(p.bufflen).to_ne_bytes());
                put(b, u + 48, &p.bufflen.to_ne_bytes());
                put(b, u + 56, &p.timeout.to_ne_bytes());
                put(b, u + 60, &op_flags::INFO_VALID.to_ne_bytes());
                // queue_type, data_direction, expected_values_set,
                // expected_data_direction.
                put(
                    b,
                    u + 64,
                    &[p.queue_type, p.data_direction, 1, p.data_direction],
                );
                put(b, u + 68, &p.bufflen.to_ne_bytes());
            }
            Self::Exec(e) => {
                put(b, u, &e.sess_h.to_ne_bytes());
                put_cdb(b, u + 8, e.cdb, u + 24);
                put(b, u + 32, &e.lba.to_ne_bytes());
                put(b, u + 40, &e.data_len.to_ne_bytes());
                put(b, u + 48, &e.bufflen.to_ne_bytes());
                put(b, u + 52, &e.alloc_len.to_ne_bytes());
                put(b, u + 56, &e.pbuf.to_ne_bytes());
                put(b, u + 64, &[e.queue_type, e.data_direction, 0]);
                put(b, u + 68, &e.timeout.to_ne_bytes());
                put(b, u + 84, &e.sn.to_ne_bytes());
            }
            Self::OnFree {
                pbuf,
                resp_data_len,
                buffer_cached,
                aborted,
                status,
            } => {
                put(b, u, &pbuf.to_ne_bytes());
                put(b, u + 8, &resp_data_len.to_ne_bytes());
                put(
                    b,
                    u + 12,
                    &[u8::from(buffer_cached), u8::from(aborted), status, 0],
                );
            }
            Self::OnCachedMemFree { pbuf } => put(b, u, &pbuf.to_ne_bytes()),
            Self::TaskMgmt {
                sess_h,
                function,
                cmd_h_to_abort,
                ..
            } => {
                // cmd_sn and cmd_sn_set stay 0: the core does not order
                // task management by CmdSN.
                put(b, u, &sess_h.to_ne_bytes());
                put(b, u + 8, &function.to_ne_bytes());
                put(b, u + 12, &cmd_h_to_abort.to_ne_bytes());
            }
        }
    }
}

/// `struct scst_user_reply_cmd` as received.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub cmd_h: u32,
    pub subcode: u32,
    body: [u8; REPLY_CMD_SIZE - UNION_OFFSET],
}

/// `struct scst_user_scsi_cmd_reply_exec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecReply {
    pub resp_data_len: i32,
    pub pbuf: u64,
    pub reply_type: u8,
    pub status: u8,
    pub sense_len: u8,
    pub psense_buffer: u64,
}

impl Reply {
    /// Decodes the structure at the start of `b`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            cmd_h: u32_at(b, 0),
            subcode: u32_at(b, 4),
            body: get(b, UNION_OFFSET),
        }
    }

    /// `result` (replies to notifications).
    pub fn result(&self) -> i32 {
        i32_at(&self.body, 0)
    }

    /// `alloc_reply.pbuf`.
    pub fn alloc_pbuf(&self) -> u64 {
        u64_at(&self.body, 0)
    }

    /// `parse_reply`.
    pub fn parse(&self) -> ParseReply {
        ParseReply {
            status: u8_at(&self.body, 0),
            queue_type: u8_at(&self.body, 8),
            data_direction: u8_at(&self.body, 9),
            cdb_len: u16::from_ne_bytes(get(&self.body, 10)),
            lba: i64::from_ne_bytes(get(&self.body, 16)),
            data_len: i64::from_ne_bytes(get(&self.body, 24)),
            bufflen: i32_at(&self.body, 32),
            op_flags: u32_at(&self.body, 36),
            out_bufflen: i32_at(&self.body, 40),
            sense_len: u8_at(&self.body, 8),
            psense_buffer: u64_at(&self.body, 16),
        }
    }

    /// `exec_reply`.
    pub fn exec(&self) -> ExecReply {
        ExecReply {
            resp_data_len: i32_at(&self.body, 0),
            pbuf: u64_at(&self.body, 8),
            reply_type: u8_at(&self.body, 16),
            status: u8_at(&self.body, 17),
            sense_len: u8_at(&self.body, 24),
            psense_buffer: u64_at(&self.body, 32),
        }
    }
}

/// `struct scst_user_scsi_cmd_reply_parse`: with a non-zero `status` the
/// command ends with it (and `sense_len` bytes of sense at
/// `psense_buffer`, which share the union with the other fields).
#[derive(Clone, Copy, Debug)]
pub struct ParseReply {
    pub status: u8,
    pub queue_type: u8,
    pub data_direction: u8,
    pub cdb_len: u16,
    pub lba: i64,
    pub data_len: i64,
    pub bufflen: i32,
    pub op_flags: u32,
    pub out_bufflen: i32,
    pub sense_len: u8,
    pub psense_buffer: u64,
}

impl ParseReply {
    /// SCST's checks of a reply without a status: a known queue type and
    /// direction, a buffer for a command that moves data, no negative
    /// length or LBA, no longer CDB than `cdb_len`, INFO_VALID set.
    pub fn is_valid(&self, cdb_len: usize) -> bool {
        self.queue_type <= MAX_QUEUE_TYPE
            && matches!(
                self.data_direction,
                dir::WRITE | dir::READ | dir::BIDI | dir::NONE
            )
            && (self.data_direction == dir::NONE || self.bufflen > 0)
            && self.bufflen >= 0
            && self.out_bufflen >= 0
            && self.data_len >= 0
            && self.lba >= 0
            && usize::from(self.cdb_len) <= cdb_len
            && self.op_flags & op_flags::INFO_VALID != 0
    }
}

/// Whether `status` is a SAM-5 status a command may end with.
pub fn valid_status(status: u8) -> bool {
    matches!(
        status,
        0x00 | 0x02 | 0x04 | 0x08 | 0x10 | 0x14 | 0x18 | 0x22 | 0x28 | 0x30 | 0x40
    )
}

/// The LBA a disk CDB addresses (0 for other commands), as SCST's parse
/// gives it to the handler.
pub fn disk_lba(cdb: &[u8]) -> i64 {
    let b = |i: usize| u64::from(cdb.get(i).copied().unwrap_or(0));
    let be = |from: usize, n: usize| (0..n).fold(0u64, |v, i| (v << 8) | b(from + i));
    let lba = match cdb.first().copied().unwrap_or(0) {
        // READ(6), WRITE(6)
        0x08 | 0x0a => ((b(1) & 0x1f) << 16) | (b(2) << 8) | b(3),
        // READ/WRITE/VERIFY/WRITE AND VERIFY/WRITE SAME/SYNC CACHE (10)
        0x28 | 0x2a | 0x2e | 0x2f | 0x35 | 0x41 => be(2, 4),
        // READ/WRITE/VERIFY (12)
        0xa8 | 0xaa | 0xaf => be(2, 4),
        // READ/WRITE/VERIFY/WRITE SAME/SYNC CACHE (16), COMPARE AND WRITE
        0x88 | 0x8a | 0x8f | 0x93 | 0x91 | 0x89 => be(2, 8),
        _ => 0,
    };
    lba as i64
}

/// `struct scst_user_get_multi`'s header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetMulti {
    pub preplies: u64,
    pub replies_cnt: i16,
    pub replies_done: i16,
    pub cmds_cnt: i16,
}

impl GetMulti {
    /// Decodes the header at the start of `b`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            preplies: u64_at(b, 0),
            replies_cnt: i16_at(b, 8),
            replies_done: i16_at(b, 10),
            cmds_cnt: i16_at(b, 12),
        }
    }

    /// Encodes the header into `b`.
    pub fn encode(&self, b: &mut [u8]) {
        put(b, 0, &self.preplies.to_ne_bytes());
        put(b, 8, &self.replies_cnt.to_ne_bytes());
        put(b, 10, &self.replies_done.to_ne_bytes());
        put(b, 12, &self.cmds_cnt.to_ne_bytes());
        put(b, 14, &0i16.to_ne_bytes());
    }
}

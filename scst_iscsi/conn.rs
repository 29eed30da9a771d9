// SPDX-License-Identifier: GPL-2.0

//! The sending half of an iSCSI connection: the socket, the send lock that
//! numbers PDUs (StatSN, ExpCmdSN, MaxCmdSN) and appends digests, and the
//! connection's identity. The receive loop is in `ffp.rs`, the responses
//! and their sender in `reply.rs`.

use super::login::Negotiated;
use super::pdu::*;
use super::reply::Outgoing;
use super::text::IscsiName;
use crate::kernel_ext::crypto;
use crate::kernel_ext::net::TcpStream;
use crate::kernel_ext::sg::SgList;
use crate::scst_core::sense;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    new_mutex, new_spinlock,
    prelude::*,
    sync::Arc,
    sync::{Mutex, SpinLock},
};

/// The sending half of a connection, shared with whoever sends on it.
#[pin_data]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Serialises PDUs on the wire and numbers the responses.
    #[pin]
    pub(super) tx: Mutex<TxState>,
    /// Who the connection's session is for (set once it has one).
    #[pin]
    identity: Mutex<Option<Identity>>,
    pub(crate) closing: AtomicBool,
    /// ExpCmdSN as the receive loop last advanced it, and the window size:
    /// for PDUs sent from elsewhere (Async Messages).
    pub(super) exp_cmd_sn: AtomicU32,
    pub(super) queued_commands: AtomicU32,
    /// SCSI commands that took a place in the window (not immediate) and
    /// have not finished: each keeps MaxCmdSN one lower.
    pub(super) outstanding: AtomicU32,
    /// MaxXmitDataSegmentLength, for Data-In sent by the sender.
    pub(super) max_xmit_data_segment_length: AtomicU32,
    /// Responses waiting for the connection's sender, oldest first.
    #[pin]
    pub(super) outgoing: SpinLock<Outgoing>,
}

pub(super) struct TxState {
    pub(super) stat_sn: u32,
    /// The MaxCmdSN last sent: it never goes back (RFC 7143 4.2.2.1).
    max_cmd_sn: u32,
    pub(super) header_digest: bool,
    pub(super) data_digest: bool,
    /// StatSN and digests are those of the full feature phase.
    full_feature: bool,
}

/// The sequence numbers a PDU carries, taken under the send lock.
#[derive(Clone, Copy)]
pub(super) struct Numbers {
    pub(super) stat_sn: u32,
    pub(super) exp: u32,
    pub(super) max: u32,
}

/// The I_T nexus of a normal session, for reinstatement by ISID.
#[derive(Clone, Copy)]
pub(crate) struct Identity {
    pub(crate) tsih: u16,
    pub(crate) target: IscsiName,
    pub(crate) initiator: IscsiName,
    pub(crate) isid: [u8; 6],
}

/// The data segment that carries sense data in a SCSI Response or an
/// Async Message: SenseLength, then the sense bytes (RFC 7143 11.4.7);
/// empty when there is no sense.
pub(super) struct SenseSegment {
    bytes: [u8; 2 + sense::MAX_SENSE_LEN],
    len: usize,
}

impl SenseSegment {
    pub(super) fn new(sense: &[u8]) -> Self {
        let mut bytes = [0u8; 2 + sense::MAX_SENSE_LEN];
        let n = sense.len().min(sense::MAX_SENSE_LEN);
        let len = if n == 0 { 0 } else { 2 + n };
        let (head, body) = bytes.split_at_mut(2);
        head.copy_from_slice(&(n as u16).to_be_bytes());
        if let (Some(to), Some(from)) = (body.get_mut(..n), sense.get(..n)) {
            to.copy_from_slice(from);
        }
        Self { bytes, len }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                stream,
                tx <- new_mutex!(TxState {
                    stat_sn: 0,
                    max_cmd_sn: 0,
                    header_digest: false,
                    data_digest: false,
                    full_feature: false,
                }),
                identity <- new_mutex!(None),
                closing: AtomicBool::new(false),
                exp_cmd_sn: AtomicU32::new(0),
                queued_commands: AtomicU32::new(1),
                outstanding: AtomicU32::new(0),
                max_xmit_data_segment_length: AtomicU32::new(8192),
                outgoing <- new_spinlock!(Outgoing::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Records who the connection's session is for.
    pub(crate) fn set_identity(&self, identity: Identity) {
        *self.identity.lock() = Some(identity);
    }

    /// Whether the connection carries the session with `tsih`.
    pub(crate) fn has_tsih(&self, tsih: u16) -> bool {
        self.identity
            .lock()
            .as_ref()
            .is_some_and(|i| i.tsih == tsih)
    }

    /// Whether the connection carries the session of `initiator` with
    /// `isid` on `target`.
    pub(crate) fn is_session_of(&self, target: &[u8], initiator: &[u8], isid: [u8; 6]) -> bool {
        self.identity.lock().as_ref().is_some_and(|i| {
            i.isid == isid
                && i.target.as_bytes() == target
                && i.initiator.as_bytes().eq_ignore_ascii_case(initiator)
        })
    }

    /// Sends a SCSI asynchronous event (Async Message, AsyncEvent 0) for
    /// `lun` carrying `sense`; nothing before the full feature phase or
    /// once the connection is closing (the unit attention still waits).
    pub(crate) fn send_scsi_event(&self, lun: [u8; 8], sense: &[u8]) -> Result {
        if self.closing.load(Ordering::Relaxed) {
            return Ok(());
        }
        let segment = SenseSegment::new(sense);
        let mut tx = self.tx.lock();
        if !tx.full_feature {
            return Ok(());
        }
        let Numbers { stat_sn, exp, max } = self.numbers(&mut tx);
        let mut bhs = [0u8; BHS_LEN];
        AsyncMessage {
            lun,
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            async_event: ASYNC_EVENT_SCSI,
            async_vcode: 0,
            parameter1: 0,
            parameter2: 0,
            parameter3: 0,
            data_segment_len: segment.bytes().len() as u32,
        }
        .encode(&mut bhs);
        tx.stat_sn = tx.stat_sn.wrapping_add(1);
        self.send_locked(&tx, &mut bhs, segment.bytes(), false)
    }

    /// The numbers of a PDU sent now, under the send lock `tx`: the
    /// window is QueuedCommands wide, less the commands still outstanding,
    /// and its end never moves back on the wire.
    pub(super) fn numbers(&self, tx: &mut TxState) -> Numbers {
        // The loop counts a command outstanding before ExpCmdSN passes it.
        let exp = self.exp_cmd_sn.load(Ordering::Acquire);
        let queued = self.queued_commands.load(Ordering::Relaxed).max(1);
        let outstanding = self.outstanding.load(Ordering::Acquire).min(queued);
        let mut max = exp.wrapping_add(queued - outstanding).wrapping_sub(1);
        if sn_lt(max, tx.max_cmd_sn) {
            max = tx.max_cmd_sn;
        }
        tx.max_cmd_sn = max;
        Numbers {
            stat_sn: tx.stat_sn,
            exp,
            max,
        }
    }

    /// Opens the command window of the full feature phase: ExpCmdSN from
    /// the login, QueuedCommands wide; Data-In segments of at most
    /// `max_xmit` bytes.
    pub(super) fn open_window(&self, exp_cmd_sn: u32, queued_commands: u32, max_xmit: u32) {
        self.exp_cmd_sn.store(exp_cmd_sn, Ordering::Release);
        self.queued_commands
            .store(queued_commands, Ordering::Relaxed);
        self.tx.lock().max_cmd_sn = exp_cmd_sn.wrapping_add(queued_commands).wrapping_sub(1);
        self.max_xmit_data_segment_length
            .store(max_xmit, Ordering::Relaxed);
    }

    /// ExpCmdSN and the MaxCmdSN the initiator was last told.
    pub(crate) fn sn_window(&self) -> (u32, u32) {
        let tx = self.tx.lock();
        (self.exp_cmd_sn.load(Ordering::Acquire), tx.max_cmd_sn)
    }

    /// Closes the connection; the receive loop ends and cleans up.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.stream.shutdown();
    }
}

/// Pads a data segment to 4 bytes.
pub(super) const PAD: [u8; 3] = [0; 3];

/// The iSCSI digest (wire order) of `data` followed by `pad`.
pub(super) fn digest_of(data: &[u8], pad: &[u8]) -> [u8; DIGEST_LEN] {
    (!crypto::crc32c(crypto::crc32c(!0, data), pad)).to_le_bytes()
}

/// The iSCSI digest of `len` bytes of `sg` from `skip`, then `pad`.
pub(super) fn digest_of_sg(
    sg: &SgList<'_>,
    skip: usize,
    len: usize,
    pad: &[u8],
) -> Result<[u8; DIGEST_LEN]> {
    let crc = crypto::crc32c_sg(!0, sg, skip, len)?;
    Ok((!crypto::crc32c(crc, pad)).to_le_bytes())
}

impl Conn {
    /// Sends one PDU with a data segment from `data`, digests as
    /// negotiated, under the send lock the caller holds.
    pub(super) fn send_locked(
        &self,
        tx: &TxState,
        bhs: &mut [u8; BHS_LEN],
        data: &[u8],
        more: bool,
    ) -> Result {
        let _ = set_data_segment_len(bhs, data.len() as u32);
        let pad = PAD.get(..padded(data.len()) - data.len()).unwrap_or(&[]);
        // Each digest is a CRC pass: only when negotiated.
        let header_digest = tx.header_digest.then(|| digest_of(&bhs[..], &[]));
        let data_digest = (tx.data_digest && !data.is_empty()).then(|| digest_of(data, pad));
        let hd = header_digest.as_ref().map_or(&[][..], |d| &d[..]);
        let dd = data_digest.as_ref().map_or(&[][..], |d| &d[..]);
        self.stream.write_all(&[&bhs[..], hd, data, pad, dd], more)
    }

    /// Sends one PDU (login phase: no digests yet).
    pub(crate) fn send(&self, bhs: &mut [u8; BHS_LEN], data: &[u8], more: bool) -> Result {
        let tx = self.tx.lock();
        self.send_locked(&tx, bhs, data, more)
    }

    /// Numbers a PDU (StatSN, ExpCmdSN, MaxCmdSN) under the send lock and
    /// sends it.
    pub(super) fn send_numbered(
        &self,
        encode: impl FnOnce(Numbers, &mut [u8; BHS_LEN]),
        data: &[u8],
        advance: bool,
    ) -> Result {
        let mut tx = self.tx.lock();
        let mut bhs = [0u8; BHS_LEN];
        encode(self.numbers(&mut tx), &mut bhs);
        if advance {
            tx.stat_sn = tx.stat_sn.wrapping_add(1);
        }
        self.send_locked(&tx, &mut bhs, data, false)
    }

    /// Enters the full feature phase: the StatSN it continues from and the
    /// digests every later PDU carries.
    pub(crate) fn start_full_feature(&self, stat_sn: u32, n: &Negotiated) {
        let mut tx = self.tx.lock();
        tx.stat_sn = stat_sn;
        tx.header_digest = n.header_digest;
        tx.data_digest = n.data_digest;
        tx.full_feature = true;
    }
}

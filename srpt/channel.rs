// SPDX-License-Identifier: GPL-2.0

//! An SRP channel: one accepted login, its RDMA connection and its core
//! session, from the login to the release of its last command.
//!
//! Requests arrive in the CQ pool's workqueue (process context that must
//! not wait for a backend): a command is decoded, recorded in the session
//! and its buffer taken there; its data-out is fetched with RDMA READs,
//! whose completion submits it to the core ([`Context::Direct`]); its
//! response goes out from wherever the core ends it (`command.rs`).
//!
//! Each request holds one send unit from its arrival to the completion of
//! its response: the initiator may have as many outstanding as it has
//! credits, and the target grants as many credits as it has send units
//! (`req_lim_delta`, given back with each response). The initiator may
//! use a credit again as soon as the response reaches it, before the
//! response's send completes here: a request that finds every unit taken
//! so is kept, in arrival order, until a send completion frees one (as
//! ib_srpt's wait list). A post that finds the send queue full waits in
//! the channel's FIFO until a completion frees room (SCST's XMIT_WAIT).

use super::command::{self, DataIn, PendingResponse, PendingWrite, RSP_MAX};
use super::srq::Credits;
use super::{iu, SrptShared};
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::rdma_channel::{
    Channel, ChannelEvent, ChannelHandler, ChannelRef, PostError,
};
use crate::scst_core::{buffer::CmdBuffer, session::Session, Scst};
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    alloc::flags::{GFP_KERNEL, GFP_NOWAIT},
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
};

/// What became of work offered to the send queue.
enum Offered<W> {
    Posted,
    /// Parked until a completion makes room.
    Parked,
    /// Neither (the channel is closing, or the post failed): the work is
    /// back.
    Failed(PostError, W),
}

/// What a send completion found as it freed its unit.
struct Freed {
    /// Requests kept for want of a send unit.
    kept: bool,
    closed: bool,
    /// Work parked for want of room in the send queue.
    parked: bool,
}

/// What a send unit is doing.
pub(super) enum Slot {
    Free,
    /// Its request is in the core, or in task management.
    Busy,
    /// Its command's data-out is being fetched, or waits for room to be.
    DataOut(PendingWrite),
    /// Its response waits for room in the send queue.
    Respond(PendingResponse),
    /// Its response is on the wire, with the buffer its data-in is read
    /// from (held only: it is given back when the unit is free).
    Sent(#[allow(dead_code)] Option<CmdBuffer>),
}

/// An I_T nexus: an initiator port's channels to a target port, which
/// share one session (SRP-2's multichannel: one nexus, several channels),
/// so that unit attentions, reservations, task management and tags are
/// the nexus' whatever channel a command takes.
pub(super) struct Nexus {
    pub(super) session: Arc<Session>,
    pub(super) initiator_port_id: [u8; 16],
    pub(super) port: u32,
    /// Channels on it; the session closes with the last.
    channels: AtomicUsize,
}

impl Nexus {
    /// A nexus with its first channel.
    pub(super) fn new(session: Arc<Session>, initiator_port_id: [u8; 16], port: u32) -> Self {
        Self {
            session,
            initiator_port_id,
            port,
            channels: AtomicUsize::new(1),
        }
    }

    /// Takes it for one more channel, unless its last one left (its
    /// session is closing).
    pub(super) fn join(&self) -> bool {
        self.channels
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n == 0 {
                    None
                } else {
                    Some(n + 1)
                }
            })
            .is_ok()
    }

    /// Whether a channel is on it.
    pub(super) fn open(&self) -> bool {
        self.channels.load(Ordering::Acquire) > 0
    }

    /// A channel left; the last one removes the session, on the driver's
    /// workqueue (it takes the registry, which a CM handler or a
    /// completion must not wait for).
    pub(super) fn release(&self, shared: &SrptShared) {
        if self.channels.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let scst: Arc<Scst> = shared.scst.clone();
        let session = self.session.clone();
        let spawned = shared.wq.queue().try_spawn(GFP_KERNEL, move || {
            scst.with_registry(|r| Scst::remove_session(r, super::DRIVER, &session));
        });
        if spawned.is_err() {
            pr_warn!("ib_srpt: no memory to close a session\n");
        }
    }
}

/// What a channel's trace counts (see [`super::ChannelTrace`]).
#[derive(Clone, Copy)]
pub(super) enum Held {
    /// A command the core holds.
    InCore,
    /// A command whose data-out is being fetched.
    DataOut,
    /// A task management function.
    TaskMgmt,
}

/// One thing a channel holds, counted in its trace until this drops (in
/// any context).
pub(super) struct Tally {
    trace: Arc<super::ChannelTrace>,
    held: Held,
}

impl Tally {
    pub(super) fn new(srp: &SrpChannel, held: Held) -> Self {
        let trace = srp.live.trace.clone();
        Self::counter(&trace, held).fetch_add(1, Ordering::Relaxed);
        Self { trace, held }
    }

    fn counter(trace: &super::ChannelTrace, held: Held) -> &AtomicUsize {
        match held {
            Held::InCore => &trace.in_core,
            Held::DataOut => &trace.data_out,
            Held::TaskMgmt => &trace.in_tm,
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        Self::counter(&self.trace, self.held).fetch_sub(1, Ordering::Relaxed);
    }
}

/// The channel's state, under its lock.
struct State {
    /// The channel's own reference, until it closes.
    channel: Option<Channel>,
    closed: bool,
    /// Send units: what each is doing, and those free.
    slots: KVec<Slot>,
    free: KVec<u32>,
    /// Units whose post waits for room, oldest first (a ring of
    /// `slots.len()` places).
    waiting: KVec<u32>,
    wait_head: usize,
    wait_len: usize,
    /// Credits of requests that ended without a response, given back
    /// with the next one.
    owed: u32,
    /// Requests that found every send unit taken, oldest first (room for
    /// one per unit: more would be beyond the credits granted).
    deferred: KVec<KVec<u8>>,
}

/// What a channel's login agreed on.
#[derive(Clone, Copy)]
pub(super) struct Terms {
    /// The largest response the initiator takes.
    pub(super) max_rsp: usize,
    /// Where immediate data begins in an SRP_CMD, if granted.
    pub(super) immediate_offset: Option<usize>,
}

/// One SRP channel.
#[pin_data]
pub(super) struct SrpChannel {
    pub(super) shared: Arc<SrptShared>,
    /// What its login agreed on.
    pub(super) terms: Terms,
    /// Counts the channel alive, so that device removal can wait for it
    /// (and say what it waits for).
    pub(super) live: super::Counted,
    /// The I_T nexus the channel belongs to (initiator port, target
    /// port), with its session.
    pub(super) nexus: Arc<Nexus>,
    /// It let go of its nexus (once).
    left_nexus: AtomicBool,
    #[pin]
    state: SpinLock<State>,
}

impl SrpChannel {
    /// A channel of up to `units` send units, before its connection, on
    /// the login's `terms`.
    pub(super) fn new(
        shared: Arc<SrptShared>,
        nexus: Arc<Nexus>,
        terms: Terms,
        units: u32,
        live: super::Counted,
    ) -> Result<Arc<Self>> {
        let n = units as usize;
        let mut slots = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut waiting = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(Slot::Free, GFP_KERNEL)?;
            waiting.push(0, GFP_KERNEL)?;
        }
        let free = KVec::with_capacity(n, GFP_KERNEL)?;
        let deferred = KVec::with_capacity(n, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                shared,
                terms,
                live,
                nexus,
                left_nexus: AtomicBool::new(false),
                state <- new_spinlock!(State {
                    channel: None,
                    closed: false,
                    slots,
                    free,
                    waiting,
                    wait_head: 0,
                    wait_len: 0,
                    owed: 0,
                    deferred,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// The channel has `units` send units (at most as many as it was
    /// made for): they are free, before any request can arrive.
    pub(super) fn ready(&self, units: u32) {
        let mut st = self.state.lock();
        let n = (units as usize).min(st.slots.len());
        for i in (0..n).rev() {
            // Reserved in `new`.
            let _ = st.free.push(i as u32, GFP_KERNEL);
        }
    }

    /// The channel is connected: its own reference is kept until it
    /// closes (at once if it closed meanwhile).
    pub(super) fn open(&self, channel: Channel) {
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            channel.close();
            return;
        }
        st.channel = Some(channel);
        self.live.trace.holds.store(true, Ordering::Relaxed);
    }

    /// The session of the channel's nexus.
    pub(super) fn session(&self) -> &Arc<Session> {
        &self.nexus.session
    }

    /// Whether the channel is closing.
    pub(super) fn closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Ends the channel: its connection, and its session if no other
    /// channel of its I_T nexus is left; commands still in the core end
    /// without a response. Any context; once.
    pub(super) fn shutdown(self: &Arc<Self>) {
        let channel = {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            self.live.trace.holds.store(false, Ordering::Relaxed);
            st.channel.take()
        };
        self.live.trace.closed.store(true, Ordering::Relaxed);
        if let Some(ch) = channel {
            ch.close();
        }
        self.shared.forget_channel(self);
        if !self.left_nexus.swap(true, Ordering::AcqRel) {
            self.nexus.release(&self.shared);
        }
    }

    /// A free send unit, taken.
    fn take_free(st: &mut State) -> Option<u32> {
        let slot = st.free.pop()?;
        if let Some(s) = st.slots.get_mut(slot as usize) {
            *s = Slot::Busy;
        }
        Some(slot)
    }

    /// Send unit `slot` is free again; `unanswered`, its request got no
    /// response, and its credit goes with the next one.
    pub(super) fn release_slot(&self, slot: u32, unanswered: bool) {
        self.free_slot(slot, unanswered);
    }

    /// [`Self::release_slot`], saying what a send completion looks for,
    /// under the same lock: requests kept for want of a unit, and work
    /// parked for want of room.
    fn free_slot(&self, slot: u32, unanswered: bool) -> Freed {
        let mut st = self.state.lock();
        let found = Freed {
            kept: !st.deferred.is_empty(),
            closed: st.closed,
            parked: st.wait_len > 0,
        };
        if unanswered {
            st.owed = st.owed.saturating_add(1);
        }
        let Some(s) = st.slots.get_mut(slot as usize) else {
            return found;
        };
        if matches!(s, Slot::Free) {
            return found;
        }
        // What it held (a buffer a user-space handler lent) is given back
        // outside the lock.
        let held = core::mem::replace(s, Slot::Free);
        // Room reserved for every unit.
        let _ = st.free.push(slot, GFP_KERNEL);
        drop(st);
        drop(held);
        found
    }

    /// A request that gets no response took a credit.
    fn owe(&self) {
        let mut st = self.state.lock();
        st.owed = st.owed.saturating_add(1);
    }

    /// Parks `slot`'s work until the send queue has room: behind any that
    /// waits already, or (`first`: it was parked before) at the head of
    /// the line. Under the lock its post failed under, so that a
    /// completion, which looks for parked work under it too, cannot miss
    /// it. Returns the work if the channel closed meanwhile.
    fn park_locked(st: &mut State, slot: u32, work: Slot, first: bool) -> Option<Slot> {
        let n = st.waiting.len();
        if st.closed || n == 0 || st.wait_len >= n {
            return Some(work);
        }
        let at = if first {
            st.wait_head = (st.wait_head + n - 1) % n;
            st.wait_head
        } else {
            (st.wait_head + st.wait_len) % n
        };
        st.waiting[at] = slot;
        st.wait_len += 1;
        if let Some(s) = st.slots.get_mut(slot as usize) {
            *s = work;
        }
        None
    }

    /// The oldest parked work, taken out of its unit.
    fn unpark(&self) -> Option<(u32, Slot)> {
        let mut st = self.state.lock();
        if st.wait_len == 0 {
            return None;
        }
        let n = st.waiting.len();
        let slot = st.waiting[st.wait_head];
        st.wait_head = (st.wait_head + 1) % n;
        st.wait_len -= 1;
        let work = match st.slots.get_mut(slot as usize) {
            Some(s) => core::mem::replace(s, Slot::Busy),
            None => Slot::Busy,
        };
        Some((slot, work))
    }

    /// Takes what `slot` holds, leaving it busy.
    fn take_work(&self, slot: u32) -> Slot {
        match self.state.lock().slots.get_mut(slot as usize) {
            Some(s) => core::mem::replace(s, Slot::Busy),
            None => Slot::Free,
        }
    }

    /// Posts `work` of `slot` (a command's data-out READs, or a parked
    /// response after its data-in), or parks it until there is room
    /// (`first`: it was parked before, and goes before what waits). The
    /// work is in its unit before the completion can look for it: the
    /// post is made under the channel's lock. Other kinds of work are
    /// given back as failed.
    fn offer(&self, ch: &Channel, slot: u32, mut work: Slot, first: bool) -> Offered<Slot> {
        let xfer = match &mut work {
            Slot::DataOut(pw) => pw.xfer(ch, slot).map(Some),
            Slot::Respond(pr) => pr.xfer(ch, slot),
            _ => Err(PostError::Failed(EINVAL)),
        };
        let (xfer, ready) = match xfer {
            Ok(x) => (x, true),
            // No registration free: parked below.
            Err(PostError::Full) => (None, false),
            Err(e) => return Offered::Failed(e, work),
        };
        let mut st = self.state.lock();
        let posted = match (&work, xfer) {
            (_, x) if !ready || (!first && st.wait_len > 0) => Err((PostError::Full, x)),
            (Slot::DataOut(_), Some(x)) => {
                ch.read(x, u64::from(slot)).map_err(|(e, x)| (e, Some(x)))
            }
            (Slot::Respond(pr), x) => ch.send(slot, pr.bytes(), x),
            (_, x) => Err((PostError::Failed(EINVAL), x)),
        };
        match posted {
            Ok(()) => {
                let held = match work {
                    // Its buffer stays until the send completes.
                    Slot::Respond(mut pr) => Slot::Sent(pr.take_buffer()),
                    w => w,
                };
                if let Some(s) = st.slots.get_mut(slot as usize) {
                    *s = held;
                }
                Offered::Posted
            }
            Err((PostError::Full, x)) => {
                let back = Self::park_locked(&mut st, slot, work, first);
                drop(st);
                drop(x);
                match back {
                    Some(work) => Offered::Failed(PostError::Closing, work),
                    None => Offered::Parked,
                }
            }
            Err((e, x)) => {
                drop(st);
                drop(x);
                Offered::Failed(e, work)
            }
        }
    }

    /// Fetches a command's data-out (or parks it until there is room).
    pub(super) fn fetch(self: &Arc<Self>, ch: &Channel, slot: u32, pw: PendingWrite) {
        if let Offered::Failed(e, work) = self.offer(ch, slot, Slot::DataOut(pw), false) {
            command::log_post_failure("RDMA READ", e);
            self.end_unanswered(slot, work);
        }
    }

    /// A command that cannot go on (its data-out cannot come, its
    /// response cannot go: the channel is closing) ends without a
    /// response, its unit free again.
    fn end_unanswered<W>(&self, slot: u32, work: W) {
        drop(work);
        self.release_slot(slot, true);
    }

    /// Sends the response `rsp` in `slot`, after the data-in `data`;
    /// the credits it gives back (its own request's, and those owed) are
    /// filled in here. Posted at once when nothing waits for room (the
    /// common case: one lock, and the response encoded once, on the
    /// stack, to be copied into its unit), else parked until a completion
    /// makes room.
    pub(super) fn respond(
        self: &Arc<Self>,
        ch: &Channel,
        slot: u32,
        mut rsp: iu::Response<'_>,
        mut data: Option<DataIn>,
    ) {
        let (xfer, ready) = match data.as_mut().map(|d| d.xfer(ch, slot)).transpose() {
            Ok(x) => (x, true),
            // No registration free: encoded and parked below.
            Err(PostError::Full) => (None, false),
            Err(e) => {
                command::log_post_failure("data-in", e);
                return self.release_slot(slot, true);
            }
        };
        let mut unit = [0u8; RSP_MAX];
        let max = self.terms.max_rsp.min(RSP_MAX);
        let mut st = self.state.lock();
        rsp.req_lim_delta = 1 + core::mem::take(&mut st.owed);
        let len = rsp.encode(&mut unit[..max]);
        let bytes = unit.get(..len).unwrap_or(&[]);
        let posted = match ready && st.wait_len == 0 {
            true => ch.send(slot, bytes, xfer),
            // Behind parked work, or without its transfer.
            false => Err((PostError::Full, xfer)),
        };
        match posted {
            Ok(()) => {
                if let Some(s) = st.slots.get_mut(slot as usize) {
                    *s = Slot::Sent(data.map(|d| d.buf));
                }
            }
            Err((PostError::Full, x)) => {
                // Its credits go with it when it is posted.
                let pr = PendingResponse::new(bytes, data);
                let back = Self::park_locked(&mut st, slot, Slot::Respond(pr), false);
                drop(st);
                drop(x);
                if back.is_some() {
                    self.release_slot(slot, true);
                }
            }
            Err((e, x)) => {
                // Its credits go with the next response instead.
                st.owed = st.owed.saturating_add(rsp.req_lim_delta - 1);
                drop(st);
                drop(x);
                command::log_post_failure("send", e);
                self.release_slot(slot, true);
            }
        }
    }

    /// Posts parked work while the send queue has room; after each
    /// completion that found some.
    fn post_waiting(&self, ch: &Channel) {
        while let Some((slot, work)) = self.unpark() {
            if !matches!(work, Slot::DataOut(_) | Slot::Respond(_)) {
                continue;
            }
            match self.offer(ch, slot, work, true) {
                Offered::Posted => {}
                Offered::Parked => return,
                Offered::Failed(_, work) => self.end_unanswered(slot, work),
            }
        }
    }

    /// A completion made room in the send queue: parked work goes, or
    /// ends if the channel closed. One look under the lock when there is
    /// none.
    fn after_completion(&self, ch: &Channel) {
        let (closed, parked) = {
            let st = self.state.lock();
            (st.closed, st.wait_len > 0)
        };
        self.after_completion_found(ch, closed, parked);
    }

    /// [`Self::after_completion`], with what a look under the lock found.
    fn after_completion_found(&self, ch: &Channel, closed: bool, parked: bool) {
        if closed {
            self.end_waiting();
        } else if parked {
            self.post_waiting(ch);
        }
    }

    /// Ends parked work of a closed channel.
    fn end_waiting(&self) {
        while let Some((slot, work)) = self.unpark() {
            self.end_unanswered(slot, work);
        }
    }

    /// A request (SRP_CMD or SRP_TSK_MGMT): served with a free send unit,
    /// or kept until a send completion frees one (behind those kept
    /// already: requests are served in the order they came).
    fn request(self: &Arc<Self>, ch: &ChannelRef<'_>, iu_bytes: &[u8]) {
        let slot = {
            let mut st = self.state.lock();
            match st.deferred.is_empty() {
                true => Self::take_free(&mut st),
                false => None,
            }
        };
        match slot {
            Some(slot) => self.serve(ch, slot, iu_bytes),
            None => {
                self.defer(iu_bytes);
                // A unit may have come free meanwhile.
                self.serve_deferred(ch);
            }
        }
    }

    /// Keeps a copy of a request that found no free send unit.
    fn defer(&self, iu_bytes: &[u8]) {
        let mut copy = KVec::new();
        if copy.extend_from_slice(iu_bytes, GFP_KERNEL).is_err() {
            pr_peer!(
                pr_warn,
                "ib_srpt: {}: no memory to keep a request: dropped\n",
                &*self.session().initiator
            );
            return self.owe();
        }
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        // Room for one per send unit, reserved in `new`: more are beyond
        // the initiator's credits.
        if st.deferred.len() >= st.slots.len() || st.deferred.push(copy, GFP_NOWAIT).is_err() {
            drop(st);
            pr_peer!(
                pr_warn,
                "ib_srpt: {}: request beyond the credits granted: dropped\n",
                &*self.session().initiator
            );
        }
    }

    /// Serves kept requests while send units are free; after a send
    /// completion, and after a request was kept.
    fn serve_deferred(self: &Arc<Self>, ch: &ChannelRef<'_>) {
        loop {
            let (slot, iu_bytes) = {
                let mut st = self.state.lock();
                if st.closed {
                    let kept = core::mem::replace(&mut st.deferred, KVec::new());
                    drop(st);
                    drop(kept);
                    return;
                }
                if st.deferred.is_empty() {
                    return;
                }
                let Some(slot) = Self::take_free(&mut st) else {
                    return;
                };
                match st.deferred.remove_ordered(0) {
                    Some(b) => (slot, b),
                    None => return,
                }
            };
            self.serve(ch, slot, &iu_bytes);
        }
    }

    /// A request with its send unit.
    fn serve(self: &Arc<Self>, ch: &ChannelRef<'_>, slot: u32, iu_bytes: &[u8]) {
        let Some(owned) = ch.get() else {
            return self.release_slot(slot, true);
        };
        match iu_bytes.first().copied() {
            Some(iu::opcode::CMD) => command::start(self, owned, slot, iu_bytes),
            _ => self.task_mgmt(owned, slot, iu_bytes),
        }
    }

    /// An SRP_TSK_MGMT: run on the driver's workqueue (it waits for the
    /// commands it ends).
    fn task_mgmt(self: &Arc<Self>, owned: Channel, slot: u32, iu_bytes: &[u8]) {
        let tm = match iu::TaskMgmt::parse(iu_bytes) {
            Ok(tm) => tm,
            Err(_) => {
                // Too short to carry its own tag: nothing to answer.
                self.release_slot(slot, true);
                return;
            }
        };
        let this = self.clone();
        let tally = Tally::new(self, Held::TaskMgmt);
        let spawned = self.shared.wq.queue().try_spawn(GFP_KERNEL, move || {
            command::task_mgmt(&this, &owned, slot, &tm);
            drop(tally);
        });
        if spawned.is_err() {
            self.release_slot(slot, true);
        }
    }

    /// Data-out of `slot` arrived (`ok`) or will not.
    fn data_out_done(self: &Arc<Self>, ch: &ChannelRef<'_>, slot: u32, ok: bool) {
        let Slot::DataOut(pw) = self.take_work(slot) else {
            return;
        };
        match ch.get() {
            Some(owned) if ok && !self.closed() => pw.submit(self, owned, slot),
            _ => self.end_unanswered(slot, pw),
        }
    }
}

/// What the RDMA channel tells its SRP channel; and the units of the
/// device's shared receive queue its credits stand for, if it is on one.
pub(super) struct Events {
    srp: Arc<SrpChannel>,
    _credits: Option<Credits>,
}

impl Events {
    pub(super) fn new(srp: Arc<SrpChannel>, credits: Option<Credits>) -> Self {
        Self {
            srp,
            _credits: credits,
        }
    }
}

impl Drop for Events {
    /// The RDMA channel is destroyed.
    fn drop(&mut self) {
        self.srp.live.trace.released.store(true, Ordering::Relaxed);
    }
}

impl ChannelHandler for Events {
    fn received(&self, ch: &ChannelRef<'_>, iu_bytes: &[u8]) {
        let this = &self.srp;
        match iu_bytes.first().copied() {
            Some(iu::opcode::CMD | iu::opcode::TSK_MGMT) => this.request(ch, iu_bytes),
            Some(iu::opcode::I_LOGOUT) => {
                pr_peer!(
                    pr_info,
                    "ib_srpt: {} logged out\n",
                    &*this.session().initiator
                );
                this.shutdown();
            }
            // Answers to requests this target does not send.
            Some(iu::opcode::CRED_RSP) | Some(iu::opcode::AER_RSP) => {}
            op => {
                pr_peer!(
                    pr_info,
                    "ib_srpt: {}: unit with opcode {:?} ignored\n",
                    &*this.session().initiator,
                    op
                );
                // It took a credit: the next response gives it back.
                this.owe();
            }
        }
    }

    fn sent(&self, ch: &ChannelRef<'_>, slot: u32, _ok: bool) {
        let this = &self.srp;
        // Its buffer goes with it: the data-in was read.
        let found = this.free_slot(slot, false);
        if found.kept {
            this.serve_deferred(ch);
        }
        this.after_completion_found(ch, found.closed, found.parked);
    }

    fn read_done(&self, ch: &ChannelRef<'_>, cookie: u64, ok: bool) {
        let this = &self.srp;
        if let Ok(slot) = u32::try_from(cookie) {
            this.data_out_done(ch, slot, ok);
        }
        this.after_completion(ch);
    }

    fn event(&self, _ch: &ChannelRef<'_>, event: ChannelEvent) {
        let this = &self.srp;
        match event {
            ChannelEvent::Established => {}
            ChannelEvent::Closed | ChannelEvent::Failed => {
                this.shutdown();
                this.end_waiting();
            }
        }
    }
}

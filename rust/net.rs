// SPDX-License-Identifier: GPL-2.0

//! Kernel TCP sockets for the iSCSI target: a listening socket per portal
//! and a stream per connection, with receives into and sends from a
//! command's pages (no copy).

use super::{bindings, sg::SgList};
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{error::to_result, prelude::*};

/// Whether a message a remote peer can trigger (a login, a bad PDU, a
/// dropped connection) may go to the kernel log now: the kernel's shared
/// limit for network messages (`net_ratelimit`, tuned by the sysctls
/// net.core.message_cost and net.core.message_burst), so that no peer can
/// flood the log.
pub(crate) fn peer_log_allowed() -> bool {
    // SAFETY: no arguments; the limiter's state is the kernel's own.
    unsafe { bindings::scst_rs_net_ratelimit() }
}

/// `pr_peer!(pr_info, ...)`: `pr_info!(...)` (or another level) for a
/// message a remote peer can trigger, within [`peer_log_allowed`].
macro_rules! pr_peer {
    ($level:ident, $($arg:tt)*) => {
        if $crate::kernel_ext::net::peer_log_allowed() {
            kernel::$level!($($arg)*);
        }
    };
}
pub(crate) use pr_peer;

/// An IP address and port to listen on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketAddr {
    /// IPv4 address bytes and port.
    V4([u8; 4], u16),
    /// IPv6 address bytes and port.
    V6([u8; 16], u16),
}

/// A socket this object owns.
///
/// # Invariants
///
/// `sock` is a valid kernel socket owned by this object, released on drop.
struct Socket {
    sock: *mut bindings::socket,
}

// SAFETY: a kernel socket may be used and released from any thread; the
// socket layer locks internally for concurrent use.
unsafe impl Send for Socket {}
// SAFETY: as above; concurrent calls (e.g. shutdown during a receive) are
// what the socket layer supports.
unsafe impl Sync for Socket {}

impl Socket {
    /// Wakes anyone blocked on the socket; later calls fail.
    fn shutdown(&self) {
        // SAFETY: `sock` is valid by the type invariants.
        unsafe { bindings::scst_rs_sock_shutdown(self.sock) };
    }

    fn address(&self, peer: bool, out: &mut [u8; 64]) -> Result<usize> {
        // SAFETY: `sock` is valid; `out` is writable for its length.
        let n = unsafe {
            bindings::scst_rs_sock_addr(self.sock, peer, out.as_mut_ptr().cast(), out.len())
        };
        to_result(n)?;
        Ok((n as usize).min(out.len() - 1))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: by the type invariants we own the socket; it is not used
        // again.
        unsafe { bindings::scst_rs_sock_release(self.sock) };
    }
}

/// A listening TCP socket.
pub(crate) struct TcpListener {
    socket: Socket,
}

impl TcpListener {
    /// Binds and listens on `addr` (SO_REUSEADDR; an IPv6 socket takes only
    /// IPv6).
    pub(crate) fn bind(addr: SocketAddr, backlog: i32) -> Result<Self> {
        let (ipv6, bytes, port) = match addr {
            SocketAddr::V4(a, p) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a);
                (false, b, p)
            }
            SocketAddr::V6(a, p) => (true, a, p),
        };
        let mut sock = ptr::null_mut();
        // SAFETY: `bytes` holds 16 readable bytes; `sock` is written on
        // success only.
        to_result(unsafe {
            bindings::scst_rs_tcp_listen(ipv6, bytes.as_ptr(), port, backlog, &mut sock)
        })?;
        // INVARIANT: on success the helper returned a socket we own.
        Ok(Self {
            socket: Socket { sock },
        })
    }

    /// Waits for a connection; fails once [`Self::shutdown`] was called.
    pub(crate) fn accept(&self) -> Result<TcpStream> {
        let mut sock = ptr::null_mut();
        // SAFETY: the listening socket is valid; `sock` is written on
        // success only.
        to_result(unsafe { bindings::scst_rs_sock_accept(self.socket.sock, &mut sock) })?;
        // INVARIANT: kernel_accept gave us a new socket we own.
        Ok(TcpStream {
            socket: Socket { sock },
            stall_ms: AtomicU32::new(0),
        })
    }

    /// Makes a blocked and every later [`Self::accept`] fail.
    pub(crate) fn shutdown(&self) {
        self.socket.shutdown();
    }
}

/// A connected TCP stream. Receives and sends may run concurrently with
/// each other; callers serialise sends among themselves.
pub(crate) struct TcpStream {
    socket: Socket,
    /// See [`Self::set_stall_limit`].
    stall_ms: AtomicU32,
}

impl TcpStream {
    /// Reads fail with `ETIMEDOUT` when nothing arrives for `ms`
    /// milliseconds in the middle of what they read (0: no limit, the
    /// default): a peer that stops halfway through a message does not hold
    /// the reader for ever.
    pub(crate) fn set_stall_limit(&self, ms: u32) {
        self.stall_ms.store(ms, Ordering::Relaxed);
    }

    fn stall_ms(&self) -> u32 {
        self.stall_ms.load(Ordering::Relaxed)
    }

    /// Fills `buf`; `ECONNRESET` when the peer closed first, `ETIMEDOUT`
    /// past the stall limit.
    pub(crate) fn read_exact(&self, buf: &mut [u8]) -> Result {
        if buf.is_empty() {
            return Ok(());
        }
        // SAFETY: the socket is valid; `buf` is writable for its length.
        to_result(unsafe {
            bindings::scst_rs_sock_recv(
                self.socket.sock,
                buf.as_mut_ptr().cast(),
                buf.len(),
                self.stall_ms(),
            )
        })
    }

    /// Fills `buf` like [`Self::read_exact`], but fails with `EAGAIN` if
    /// nothing at all arrives within `idle_ms` milliseconds (0: no limit);
    /// the stall limit counts from the first byte.
    pub(crate) fn read_idle(&self, buf: &mut [u8], idle_ms: u32) -> Result {
        // SAFETY: the socket is valid; `buf` is writable for its length.
        to_result(unsafe {
            bindings::scst_rs_sock_recv_idle(
                self.socket.sock,
                buf.as_mut_ptr().cast(),
                buf.len(),
                idle_ms,
                self.stall_ms(),
            )
        })
    }

    /// Whether received bytes are waiting to be read.
    pub(crate) fn rx_pending(&self) -> bool {
        // SAFETY: the socket is valid.
        unsafe { bindings::scst_rs_sock_rx_pending(self.socket.sock) }
    }

    /// Corks (`on`) or uncorks the stream: corked, TCP coalesces the
    /// PDUs sent in a row into full segments; uncorking sends the rest.
    pub(crate) fn set_cork(&self, on: bool) {
        // SAFETY: the socket is valid.
        unsafe { bindings::scst_rs_sock_set_cork(self.socket.sock, on) }
    }

    /// Receives `len` bytes straight into `sg` from offset `skip`.
    pub(crate) fn read_into(&self, sg: &mut SgList<'_>, skip: usize, len: usize) -> Result {
        if skip.checked_add(len).map_or(true, |end| end > sg.len()) {
            return Err(EINVAL);
        }
        let (sgl, nents) = sg.raw();
        // SAFETY: the socket is valid; `sgl` has `nents` entries covering
        // `skip + len` bytes, writable while `sg` is borrowed mutably.
        to_result(unsafe {
            bindings::scst_rs_sock_recv_sg(self.socket.sock, sgl, nents, skip, len, self.stall_ms())
        })
    }

    /// Sends the buffers in order, as one message; `more` when another
    /// PDU follows at once (TCP may hold this one back to coalesce).
    pub(crate) fn write_all(&self, bufs: &[&[u8]], more: bool) -> Result {
        const MAX_BUFS: usize = 6;
        let mut ptrs = [ptr::null::<core::ffi::c_void>(); MAX_BUFS];
        let mut lens = [0usize; MAX_BUFS];
        if bufs.len() > MAX_BUFS {
            return Err(EINVAL);
        }
        for ((p, l), b) in ptrs.iter_mut().zip(lens.iter_mut()).zip(bufs) {
            *p = b.as_ptr().cast();
            *l = b.len();
        }
        // SAFETY: the socket is valid; the first `bufs.len()` entries of
        // `ptrs` and `lens` describe readable buffers borrowed for the call.
        to_result(unsafe {
            bindings::scst_rs_sock_send(
                self.socket.sock,
                ptrs.as_ptr(),
                lens.as_ptr(),
                bufs.len(),
                more,
            )
        })
    }

    /// Sends `head`, `len` bytes of `sg` from `skip` and `tail`.
    pub(crate) fn write_pages(
        &self,
        head: &[u8],
        sg: &SgList<'_>,
        skip: usize,
        len: usize,
        tail: &[u8],
        how: PageSend,
    ) -> Result {
        if skip.checked_add(len).map_or(true, |end| end > sg.len()) {
            return Err(EINVAL);
        }
        let (sgl, nents) = sg.raw();
        // TCP takes its own page references for what it keeps, or copies.
        // SAFETY: the socket is valid; `head` and `tail` are readable for
        // their lengths; `sgl` has `nents` entries covering `skip + len`
        // bytes, valid while `sg` is borrowed.
        to_result(unsafe {
            bindings::scst_rs_sock_send_sg(
                self.socket.sock,
                head.as_ptr().cast(),
                head.len(),
                sgl,
                nents,
                skip,
                len,
                tail.as_ptr().cast(),
                tail.len(),
                how.more,
                how.by_reference,
            )
        })
    }

    /// Makes blocked and later receives and sends fail (the peer sees the
    /// connection close).
    pub(crate) fn shutdown(&self) {
        self.socket.shutdown();
    }

    /// Writes the peer's address ("a.b.c.d:port", "[v6]:port") into `out`;
    /// returns its length.
    pub(crate) fn peer_addr(&self, out: &mut [u8; 64]) -> Result<usize> {
        self.socket.address(true, out)
    }

    /// Writes the local address ("a.b.c.d:port", "[v6]:port") into `out`;
    /// returns its length.
    pub(crate) fn local_addr(&self, out: &mut [u8; 64]) -> Result<usize> {
        self.socket.address(false, out)
    }

    /// Writes the local IP address without port ("a.b.c.d", "[v6]") into
    /// `out`; returns its length.
    pub(crate) fn local_ip(&self, out: &mut [u8; 64]) -> Result<usize> {
        // SAFETY: the socket is valid; `out` is writable for its length.
        let n = unsafe {
            bindings::scst_rs_sock_local_ip(self.socket.sock, out.as_mut_ptr().cast(), out.len())
        };
        to_result(n)?;
        Ok((n as usize).min(out.len() - 1))
    }
}

/// How [`Stream::write_pages`] hands its pages to TCP.
#[derive(Clone, Copy)]
pub(crate) struct PageSend {
    /// Another PDU follows at once (TCP may hold this one back to
    /// coalesce).
    pub(crate) more: bool,
    /// TCP keeps references to the pages (no copy) until they are
    /// acknowledged: only for pages whose content stays as it is while
    /// referenced. Otherwise TCP copies them.
    pub(crate) by_reference: bool,
}

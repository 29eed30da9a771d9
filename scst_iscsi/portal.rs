// SPDX-License-Identifier: GPL-2.0

//! Portals: the addresses the driver listens on (`add_attribute portal
//! ADDR[:PORT]`) and the per-target `allowed_portal` patterns that limit
//! which of them a target is reachable through.
//!
//! Plain `core` Rust, shared with the host tests.

use core::fmt;

/// The well-known iSCSI port (RFC 7143, 13.3), used when none is given.
pub const ISCSI_PORT: u16 = 3260;

/// An IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4 address bytes.
    V4([u8; 4]),
    /// IPv6 address bytes.
    V6([u8; 16]),
}

/// An address and port to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portal {
    /// The address (all zeroes: every address of that family).
    pub ip: Ip,
    /// The TCP port.
    pub port: u16,
}

/// Why a portal did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalError {
    /// Not an IPv4 or IPv6 address.
    BadAddress,
    /// The port is not a number from 1 to 65535.
    BadPort,
}

impl PortalError {
    /// What the administrator should have written.
    pub fn expected(self) -> &'static str {
        match self {
            Self::BadAddress => "an IPv4 address or a bracketed IPv6 address, then :port",
            Self::BadPort => "a port from 1 to 65535",
        }
    }
}

impl Portal {
    /// The portals of a fresh driver: every IPv4 and IPv6 address, 3260.
    pub const DEFAULTS: [Portal; 2] = [
        Portal {
            ip: Ip::V4([0; 4]),
            port: ISCSI_PORT,
        },
        Portal {
            ip: Ip::V6([0; 16]),
            port: ISCSI_PORT,
        },
    ];

    /// Parses `a.b.c.d`, `a.b.c.d:port`, `[v6]`, `[v6]:port`, or a bare
    /// IPv6 address (no port then: its colons would be ambiguous).
    pub fn parse(s: &str) -> Result<Self, PortalError> {
        let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or(PortalError::BadAddress)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(PortalError::BadAddress)?),
            };
            (Ip::V6(parse_v6(addr)?), port)
        } else if s.matches(':').count() > 1 {
            (Ip::V6(parse_v6(s)?), None)
        } else {
            match s.split_once(':') {
                Some((a, p)) => (Ip::V4(parse_v4(a)?), Some(p)),
                None => (Ip::V4(parse_v4(s)?), None),
            }
        };
        let port = match port {
            None => ISCSI_PORT,
            Some(p) => match decimal(p) {
                Some(n @ 1..=65_535) => n as u16,
                _ => return Err(PortalError::BadPort),
            },
        };
        Ok(Self { ip: addr, port })
    }
}

/// A decimal number of at most 5 digits, without sign or leading `+`.
fn decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_v4(s: &str) -> Result<[u8; 4], PortalError> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for byte in out.iter_mut() {
        let part = parts.next().ok_or(PortalError::BadAddress)?;
        // No leading zeroes: "010" is octal to some tools.
        if part.len() > 1 && part.starts_with('0') {
            return Err(PortalError::BadAddress);
        }
        *byte = match decimal(part) {
            Some(n @ 0..=255) => n as u8,
            _ => return Err(PortalError::BadAddress),
        };
    }
    if parts.next().is_some() {
        return Err(PortalError::BadAddress);
    }
    Ok(out)
}

/// Parses the groups of one side of `::` into `out`; returns how many.
fn v6_groups(s: &str, out: &mut [u16; 8]) -> Result<usize, PortalError> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for g in s.split(':') {
        if g.is_empty() || g.len() > 4 || n == 8 {
            return Err(PortalError::BadAddress);
        }
        out[n] = u16::from_str_radix(g, 16).map_err(|_| PortalError::BadAddress)?;
        if !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PortalError::BadAddress);
        }
        n += 1;
    }
    Ok(n)
}

fn parse_v6(s: &str) -> Result<[u8; 16], PortalError> {
    let mut head = [0u16; 8];
    let mut tail = [0u16; 8];
    let groups = match s.split_once("::") {
        Some((h, t)) => {
            if t.contains("::") {
                return Err(PortalError::BadAddress);
            }
            let nh = v6_groups(h, &mut head)?;
            let nt = v6_groups(t, &mut tail)?;
            // "::" stands for at least one group of zeroes.
            if nh + nt > 7 {
                return Err(PortalError::BadAddress);
            }
            let mut all = head;
            all[nh..].fill(0);
            all[8 - nt..].copy_from_slice(&tail[..nt]);
            all
        }
        None => {
            if v6_groups(s, &mut head)? != 8 {
                return Err(PortalError::BadAddress);
            }
            head
        }
    };
    let mut out = [0u8; 16];
    for (pair, g) in out.chunks_exact_mut(2).zip(groups) {
        pair.copy_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

impl fmt::Display for Ip {
    /// IPv4 dotted; IPv6 in the RFC 5952 form the kernel prints (`%pI6c`):
    /// lowercase, the longest run of two or more zero groups as `::`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ip::V4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}"),
            Ip::V6(bytes) => {
                let mut g = [0u16; 8];
                for (i, pair) in bytes.chunks_exact(2).enumerate() {
                    g[i] = u16::from_be_bytes([pair[0], pair[1]]);
                }
                // The longest run of zero groups (the first of equals).
                let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
                for (i, &v) in g.iter().enumerate() {
                    if v == 0 {
                        if run_len == 0 {
                            run = i;
                        }
                        run_len += 1;
                        if run_len > best_len {
                            (best, best_len) = (run, run_len);
                        }
                    } else {
                        run_len = 0;
                    }
                }
                if best_len < 2 {
                    best_len = 0;
                    best = 8;
                }
                let groups = |f: &mut fmt::Formatter<'_>, part: &[u16]| -> fmt::Result {
                    for (i, v) in part.iter().enumerate() {
                        if i > 0 {
                            f.write_str(":")?;
                        }
                        write!(f, "{v:x}")?;
                    }
                    Ok(())
                };
                groups(f, &g[..best])?;
                if best_len > 0 {
                    f.write_str("::")?;
                    groups(f, &g[best + best_len..])?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Portal {
    /// `a.b.c.d:port` or `[v6]:port`, as SendTargets writes addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Ip::V4(_) => write!(f, "{}:{}", self.ip, self.port),
            Ip::V6(_) => write!(f, "[{}]:{}", self.ip, self.port),
        }
    }
}

/// Shell-style matching: `*` any run of characters, `?` any one.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and what it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).unwrap_or(&[]).iter().all(|&c| c == b'*')
}

/// Whether a target with `patterns` as its `allowed_portal` list may be
/// reached at local address `ip` (written as the kernel prints it, IPv6
/// without brackets). No patterns: every portal.
pub fn portal_allowed<'a>(mut patterns: impl Iterator<Item = &'a [u8]>, ip: &[u8]) -> bool {
    let ip = ip
        .strip_prefix(b"[")
        .and_then(|i| i.strip_suffix(b"]"))
        .unwrap_or(ip);
    let mut any = false;
    let found = patterns.any(|p| {
        any = true;
        wildcard_match(p, ip)
    });
    found || !any
}

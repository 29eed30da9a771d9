// SPDX-License-Identifier: GPL-2.0

//! What an administrator set for the iSCSI targets: the portals, each
//! target's parameters, CHAP users and allowed portals, and the discovery
//! sessions' CHAP users.
//!
//! A login takes a reference to the CHAP users it needs ([`Chap`] is never
//! changed in place: a change builds a new one), so a login in progress
//! never sees half an update and never holds the lock.

use super::login::ChapCredentials;
use super::params::{TargetParams, UserKind};
use super::portal::{portal_allowed, Portal};
use crate::kernel_ext::kvec_ext::VecExt;
use core::fmt::Write;
use kernel::{alloc::flags::GFP_KERNEL, prelude::*, str::CStr, str::CString, sync::Arc};

/// A CHAP name and its secret.
pub(crate) struct Credential {
    name: KVec<u8>,
    secret: KVec<u8>,
}

pub(crate) fn bytes(s: &[u8]) -> Result<KVec<u8>> {
    let mut v = KVec::with_capacity(s.len(), GFP_KERNEL)?;
    v.extend_from_slice(s, GFP_KERNEL)?;
    Ok(v)
}

impl Credential {
    fn new(name: &[u8], secret: &[u8]) -> Result<Self> {
        Ok(Self {
            name: bytes(name)?,
            secret: bytes(secret)?,
        })
    }

    fn try_clone(&self) -> Result<Self> {
        Self::new(&self.name, &self.secret)
    }
}

/// The CHAP users of a target or of discovery.
#[derive(Default)]
pub(crate) struct Chap {
    /// Initiators prove themselves with one of these.
    incoming: KVec<Credential>,
    /// The target proves itself with this (mutual CHAP).
    outgoing: Option<Credential>,
}

impl Chap {
    /// Whether initiators must authenticate.
    pub(crate) fn required(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// The secret of incoming user `name`.
    pub(crate) fn secret(&self, name: &[u8]) -> Option<&[u8]> {
        self.incoming
            .iter()
            .find(|c| &c.name[..] == name)
            .map(|c| &c.secret[..])
    }

    /// The target's own credentials for mutual CHAP.
    pub(crate) fn target_credentials(&self) -> Option<ChapCredentials<'_>> {
        self.outgoing.as_ref().map(|c| ChapCredentials {
            name: &c.name,
            secret: &c.secret,
        })
    }

    fn try_clone(&self) -> Result<Self> {
        let mut incoming = KVec::with_capacity(self.incoming.len(), GFP_KERNEL)?;
        for c in self.incoming.iter() {
            incoming.push(c.try_clone()?, GFP_KERNEL)?;
        }
        let outgoing = match &self.outgoing {
            Some(c) => Some(c.try_clone()?),
            None => None,
        };
        Ok(Self { incoming, outgoing })
    }

    /// A copy with user `name` added (or its secret replaced); an outgoing
    /// user replaces the one there was.
    pub(crate) fn with_user(&self, kind: UserKind, name: &str, secret: &str) -> Result<Self> {
        let mut next = self.try_clone()?;
        let cred = Credential::new(name.as_bytes(), secret.as_bytes())?;
        match kind {
            UserKind::Outgoing => next.outgoing = Some(cred),
            UserKind::Incoming => {
                if let Some(i) = next
                    .incoming
                    .iter()
                    .position(|c| &c.name[..] == name.as_bytes())
                {
                    next.incoming.swap_remove(i);
                }
                next.incoming.push(cred, GFP_KERNEL)?;
            }
        }
        Ok(next)
    }

    /// A copy without user `name`; `None` if there is no such user.
    pub(crate) fn without_user(&self, kind: UserKind, name: &str) -> Result<Option<Self>> {
        let mut next = self.try_clone()?;
        match kind {
            UserKind::Outgoing => {
                if !next
                    .outgoing
                    .as_ref()
                    .is_some_and(|c| &c.name[..] == name.as_bytes())
                {
                    return Ok(None);
                }
                next.outgoing = None;
            }
            UserKind::Incoming => {
                match next
                    .incoming
                    .iter()
                    .position(|c| &c.name[..] == name.as_bytes())
                {
                    Some(i) => drop(next.incoming.swap_remove(i)),
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(next))
    }

    /// Writes the users of `kind`, one `name secret` per line.
    pub(crate) fn show(&self, kind: UserKind, out: &mut impl Write) {
        let users = match kind {
            UserKind::Incoming => &self.incoming[..],
            UserKind::Outgoing => self.outgoing.as_slice(),
        };
        for c in users {
            let name = core::str::from_utf8(&c.name).unwrap_or("?");
            let secret = core::str::from_utf8(&c.secret).unwrap_or("?");
            let _ = writeln!(out, "{} {}", name, secret);
        }
    }
}

/// One target's configuration.
pub(crate) struct TargetConfig {
    pub(crate) name: CString,
    pub(crate) params: TargetParams,
    pub(crate) chap: Arc<Chap>,
    /// `allowed_portal` patterns; none: reachable through every portal.
    pub(crate) allowed_portals: KVec<KVec<u8>>,
}

impl TargetConfig {
    /// Whether the target may be reached at local address `ip`.
    pub(crate) fn reachable_at(&self, ip: &[u8]) -> bool {
        portal_allowed(self.allowed_portals.iter().map(|p| &p[..]), ip)
    }
}

/// The whole configuration.
pub(crate) struct Config {
    pub(crate) targets: KVec<TargetConfig>,
    pub(crate) discovery_chap: Arc<Chap>,
    /// The addresses to listen on while the driver is enabled.
    pub(crate) portals: KVec<Portal>,
}

impl Config {
    pub(crate) fn new() -> Result<Self> {
        let mut portals = KVec::new();
        portals.extend_from_slice(&Portal::DEFAULTS, GFP_KERNEL)?;
        Ok(Self {
            targets: KVec::new(),
            discovery_chap: Arc::new(Chap::default(), GFP_KERNEL)?,
            portals,
        })
    }

    /// Target `name`'s configuration.
    pub(crate) fn target(&self, name: &[u8]) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name.as_bytes() == name)
    }

    pub(crate) fn target_mut(&mut self, name: &[u8]) -> Option<&mut TargetConfig> {
        self.targets.iter_mut().find(|t| t.name.as_bytes() == name)
    }

    /// Adds target `name` with the default parameters.
    pub(crate) fn add_target(&mut self, name: &CStr) -> Result {
        let entry = TargetConfig {
            name: CString::try_from(name)?,
            params: TargetParams::default(),
            chap: Arc::new(Chap::default(), GFP_KERNEL)?,
            allowed_portals: KVec::new(),
        };
        self.targets.push(entry, GFP_KERNEL)?;
        Ok(())
    }

    pub(crate) fn del_target(&mut self, name: &[u8]) {
        if let Some(i) = self.targets.iter().position(|t| t.name.as_bytes() == name) {
            drop(self.targets.swap_remove(i));
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The removable medium of a vdisk device (`removable=1`): whether it is
//! loaded, and which I_T nexuses prevent its removal.
//!
//! Prevention is per I_T nexus (SPC-4 and SBC-4's PREVENT ALLOW MEDIUM
//! REMOVAL): the medium stays in while any nexus prevents removal, and a
//! nexus' prevention ends when it allows removal again, when the nexus is
//! lost, and with a logical unit or target reset.

use crate::kernel_ext::kvec_ext::VecExt;
use crate::scst_core::{
    device::TmFunction,
    sense::{self, Sense},
};
use kernel::{alloc::flags::GFP_ATOMIC, new_spinlock, prelude::*, sync::SpinLock};

struct State {
    loaded: bool,
    /// The nexuses ([`crate::scst_core::device::NexusInfo::id`]) that
    /// prevent removal; each at most once.
    preventing: KVec<u64>,
}

/// A removable medium.
#[pin_data]
pub(super) struct Medium {
    #[pin]
    state: SpinLock<State>,
}

impl Medium {
    /// A loaded medium that nothing keeps in.
    pub(super) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            state <- new_spinlock!(State {
                loaded: true,
                preventing: KVec::new(),
            }),
        })
    }

    /// Whether a medium is loaded.
    pub(super) fn loaded(&self) -> bool {
        self.state.lock().loaded
    }

    /// PREVENT ALLOW MEDIUM REMOVAL from `nexus`. May run where sleeping
    /// is not allowed (nullio executes in the submitting context).
    pub(super) fn prevent(&self, nexus: u64, prevent: bool) -> Result<(), Sense> {
        let mut s = self.state.lock();
        let held = s.preventing.iter().position(|&n| n == nexus);
        match (prevent, held) {
            (true, None) => s
                .preventing
                .push(nexus, GFP_ATOMIC)
                .map_err(|_| sense::INTERNAL_TARGET_FAILURE),
            (false, Some(i)) => {
                s.preventing.swap_remove(i);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// START STOP UNIT with LOEJ: loads the medium or ejects it; whether
    /// it was loaded anew (other nexuses then learn the medium may have
    /// changed). Refused while any nexus prevents removal, loading
    /// included (the medium cannot come in while the tray is locked).
    pub(super) fn load_eject(&self, load: bool) -> Result<bool, Sense> {
        let mut s = self.state.lock();
        if !s.preventing.is_empty() {
            return Err(sense::MEDIUM_REMOVAL_PREVENTED);
        }
        let changed = load && !s.loaded;
        s.loaded = load;
        Ok(changed)
    }

    /// The nexus `id` is gone: its prevention with it.
    pub(super) fn nexus_detached(&self, id: u64) {
        let mut s = self.state.lock();
        if let Some(i) = s.preventing.iter().position(|&n| n == id) {
            s.preventing.swap_remove(i);
        }
    }

    /// Task management: a logical unit or target reset ends every
    /// nexus' prevention.
    pub(super) fn task_mgmt_done(&self, function: TmFunction) {
        if matches!(function, TmFunction::LunReset | TmFunction::TargetReset) {
            self.state.lock().preventing.clear();
        }
    }
}

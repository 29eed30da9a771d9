// SPDX-License-Identifier: GPL-2.0

//! Asymmetric logical unit access (SPC-4 5.15): the access states of
//! target port groups, which commands a target port in each state
//! refuses and with what sense, the REPORT TARGET PORT GROUPS parameter
//! data and the SET TARGET PORT GROUPS parameter list.
//!
//! Pure logic, shared with the host tests; `device_groups.rs` keeps the
//! configuration and gives each I_T_L nexus its [`PortView`].

use crate::scst_core::cdb::{Cdb, Out};
use crate::scst_core::sense::{self, Sense};

/// The operation codes and service actions ALUA concerns.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const RECEIVE_DIAGNOSTIC_RESULTS: u8 = 0x1c;
    pub const SEND_DIAGNOSTIC: u8 = 0x1d;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const WRITE_BUFFER: u8 = 0x3b;
    pub const READ_BUFFER: u8 = 0x3c;
    pub const LOG_SELECT: u8 = 0x4c;
    pub const LOG_SENSE: u8 = 0x4d;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const MAINTENANCE_OUT: u8 = 0xa4;
    /// REPORT TARGET PORT GROUPS (MAINTENANCE IN) and SET TARGET PORT
    /// GROUPS (MAINTENANCE OUT).
    pub const SA_TARGET_PORT_GROUPS: u8 = 0x0a;
    /// READ CAPACITY (16) (SERVICE ACTION IN (16)).
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
}

/// A target port asymmetric access state (SPC-4 5.15.2.4). Logical block
/// dependent is not offered: SCST has no per-LBA states either.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum AccessState {
    Optimized = 0x0,
    NonOptimized = 0x1,
    Standby = 0x2,
    Unavailable = 0x3,
    Offline = 0xe,
    Transitioning = 0xf,
}

/// Every state, with the name SCST's sysfs gives it.
const STATES: [(AccessState, &str); 6] = [
    (AccessState::Optimized, "active"),
    (AccessState::NonOptimized, "nonoptimized"),
    (AccessState::Standby, "standby"),
    (AccessState::Unavailable, "unavailable"),
    (AccessState::Offline, "offline"),
    (AccessState::Transitioning, "transitioning"),
];

/// The SUPPORTED STATES byte of a target port group descriptor: T_SUP,
/// O_SUP, U_SUP, S_SUP, AN_SUP and AO_SUP.
pub const SUPPORTED_STATES: u8 = 0x80 | 0x40 | 0x08 | 0x04 | 0x02 | 0x01;

/// Why a group has its state, as REPORT TARGET PORT GROUPS tells it
/// (STATUS CODE, SPC-4 6.36).
pub mod status {
    /// Nothing to report.
    pub const NONE: u8 = 0x0;
    /// Changed by SET TARGET PORT GROUPS.
    pub const BY_STPG: u8 = 0x1;
    /// Changed by the target (implicitly: here, the administrator).
    pub const IMPLICIT: u8 = 0x2;
}

impl AccessState {
    /// The name `device_groups/.../state` shows and takes.
    pub fn name(self) -> &'static str {
        STATES
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("?", |(_, n)| n)
    }

    /// The state named `name` (case-insensitive, as SCST reads it).
    pub fn from_name(name: &str) -> Option<Self> {
        STATES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(s, _)| *s)
    }

    /// The state with code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        STATES
            .iter()
            .find(|(s, _)| *s as u8 == code)
            .map(|(s, _)| *s)
    }

    /// Whether commands that access the medium execute in this state.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Optimized | Self::NonOptimized)
    }

    /// The sense a command `cdb` received through a target port in this
    /// state ends with, or `None` when it executes.
    ///
    /// SPC-4 lists what each state accepts; READ CAPACITY is accepted
    /// beyond those lists through every port that is not transitioning,
    /// as SCST and LIO do, because initiators size a path's disk with it
    /// before they choose paths.
    pub fn refusal(self, cdb: Cdb<'_>) -> Option<Sense> {
        let refused = match self {
            Self::Optimized | Self::NonOptimized => return None,
            Self::Standby => sense::ALUA_STANDBY,
            Self::Unavailable => sense::ALUA_UNAVAILABLE,
            Self::Offline => sense::ALUA_OFFLINE,
            Self::Transitioning => sense::ALUA_TRANSITIONING,
        };
        let sa = cdb.u8(1) & 0x1f;
        let opcode = cdb.opcode();
        // What every state accepts (5.15.2.4.4 to 5.15.2.4.7).
        let always = match opcode {
            op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE => true,
            op::MAINTENANCE_IN => sa == op::SA_TARGET_PORT_GROUPS,
            // The echo buffer modes.
            op::READ_BUFFER => matches!(cdb.u8(1) & 0x1f, 0x0a | 0x0b),
            op::WRITE_BUFFER => cdb.u8(1) & 0x1f == 0x0a,
            _ => false,
        };
        if always {
            return None;
        }
        let read_capacity = opcode == op::READ_CAPACITY_10
            || (opcode == op::SERVICE_ACTION_IN_16 && sa == op::SA_READ_CAPACITY_16);
        let set_groups = opcode == op::MAINTENANCE_OUT && sa == op::SA_TARGET_PORT_GROUPS;
        let accepted = match self {
            Self::Standby => {
                read_capacity
                    || set_groups
                    || matches!(
                        opcode,
                        op::LOG_SELECT
                            | op::LOG_SENSE
                            | op::MODE_SELECT_6
                            | op::MODE_SELECT_10
                            | op::MODE_SENSE_6
                            | op::MODE_SENSE_10
                            | op::RECEIVE_DIAGNOSTIC_RESULTS
                            | op::SEND_DIAGNOSTIC
                            | op::PERSISTENT_RESERVE_IN
                            | op::PERSISTENT_RESERVE_OUT
                    )
                    // REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT
                    // FUNCTIONS, REPORT TIMESTAMP: they only describe.
                    || (opcode == op::MAINTENANCE_IN && matches!(sa, 0x0c | 0x0d | 0x0f))
            }
            Self::Unavailable => read_capacity || set_groups,
            Self::Offline => read_capacity,
            _ => false,
        };
        (!accepted).then_some(refused)
    }
}

/// What an I_T_L nexus knows of ALUA: whether its logical unit is in a
/// device group (and so answers target port group commands), whether
/// SET TARGET PORT GROUPS is accepted, and the group and state of the
/// nexus' target port when that port is in one of the device group's
/// target groups. Packed into a `u32` so that each command reads it with
/// one atomic load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortView {
    pub explicit: bool,
    pub port: Option<(u16, AccessState)>,
}

const VIEW_CONFIGURED: u32 = 1 << 31;
const VIEW_EXPLICIT: u32 = 1 << 30;
const VIEW_IN_GROUP: u32 = 1 << 29;

impl PortView {
    /// The packed form; 0 is "not in a device group".
    pub fn encode(view: Option<Self>) -> u32 {
        let Some(v) = view else { return 0 };
        let mut bits = VIEW_CONFIGURED;
        if v.explicit {
            bits |= VIEW_EXPLICIT;
        }
        if let Some((group_id, state)) = v.port {
            bits |= VIEW_IN_GROUP | u32::from(state as u8) << 16 | u32::from(group_id);
        }
        bits
    }

    /// The inverse of [`Self::encode`].
    pub fn decode(bits: u32) -> Option<Self> {
        if bits & VIEW_CONFIGURED == 0 {
            return None;
        }
        let port = if bits & VIEW_IN_GROUP != 0 {
            AccessState::from_code((bits >> 16) as u8 & 0xf).map(|s| (bits as u16, s))
        } else {
            None
        };
        Some(Self {
            explicit: bits & VIEW_EXPLICIT != 0,
            port,
        })
    }

    /// The TPGS field of standard INQUIRY data (byte 5, bits 5-4):
    /// implicit always, explicit when SET TARGET PORT GROUPS is accepted.
    pub fn tpgs(self) -> u8 {
        if self.explicit {
            0x3
        } else {
            0x1
        }
    }
}

/// The target port group commands, as the core answers them for a
/// logical unit in a device group.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GroupCommand {
    Report,
    Set,
}

/// Whether `cdb` is REPORT or SET TARGET PORT GROUPS.
pub fn group_command(cdb: Cdb<'_>) -> Option<GroupCommand> {
    if cdb.u8(1) & 0x1f != op::SA_TARGET_PORT_GROUPS {
        return None;
    }
    match cdb.opcode() {
        op::MAINTENANCE_IN => Some(GroupCommand::Report),
        op::MAINTENANCE_OUT => Some(GroupCommand::Set),
        _ => None,
    }
}

/// Writes REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36): a
/// header, then per group [`Self::group`] followed by one
/// [`Self::port`] per target port, then [`Self::finish`].
pub struct GroupReport<'o, 'b> {
    out: &'o mut Out<'b>,
}

impl<'o, 'b> GroupReport<'o, 'b> {
    /// Starts the data in the format the CDB asks: length only (000b) or
    /// with the extended header (001b).
    pub fn begin(cdb: Cdb<'_>, out: &'o mut Out<'b>) -> Result<Self, Sense> {
        let extended = match cdb.u8(1) >> 5 {
            0 => false,
            1 => true,
            _ => return Err(Sense::invalid_cdb_field(1, Some(7))),
        };
        out.be32(0);
        if extended {
            // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0: unspecified.
            out.u8(0x10);
            out.zeroes(3);
        }
        Ok(Self { out })
    }

    /// A target port group descriptor, announcing `ports` target port
    /// descriptors.
    pub fn group(
        &mut self,
        group_id: u16,
        state: AccessState,
        preferred: bool,
        status: u8,
        ports: u8,
    ) {
        self.out.u8(if preferred { 0x80 } else { 0 } | state as u8);
        self.out.u8(SUPPORTED_STATES);
        self.out.be16(group_id);
        self.out.u8(0);
        self.out.u8(status);
        self.out.u8(0);
        self.out.u8(ports);
    }

    /// A target port descriptor: the port's relative target port id.
    pub fn port(&mut self, rel_tgt_id: u16) {
        self.out.zeroes(2);
        self.out.be16(rel_tgt_id);
    }

    /// Fills in RETURN DATA LENGTH: what follows it, the extended
    /// header's other bytes included.
    pub fn finish(self) {
        let len = self.out.len() - 4;
        self.out.set_be32(0, len as u32);
    }
}

/// One descriptor of a SET TARGET PORT GROUPS parameter list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SetDescriptor {
    pub state: AccessState,
    pub group_id: u16,
    /// Its offset in the parameter list, for a field pointer.
    pub offset: u16,
}

/// Longest SET TARGET PORT GROUPS parameter list taken.
pub const MAX_SET_LIST_LEN: usize = 4 + 4 * 1024;

/// The PARAMETER LIST LENGTH of a SET TARGET PORT GROUPS CDB.
pub fn set_list_len(cdb: Cdb<'_>) -> usize {
    cdb.be32(6) as usize
}

/// Decodes the SET TARGET PORT GROUPS parameter list `params` (the
/// PARAMETER LIST LENGTH bytes the initiator sent) and hands each
/// descriptor to `each`, which may refuse it. A list of length zero
/// changes nothing (SPC-4 6.42); one that ends inside a descriptor, or
/// names a state that cannot be asked for, is refused whole.
pub fn parse_set_list(
    params: &[u8],
    mut each: impl FnMut(SetDescriptor) -> Result<(), Sense>,
) -> Result<(), Sense> {
    if params.is_empty() {
        return Ok(());
    }
    if params.len() < 4 || params.len() & 3 != 0 || params.len() > MAX_SET_LIST_LEN {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let list = Cdb(params);
    let mut offset = 4;
    while offset + 4 <= params.len() {
        let code = list.u8(offset) & 0x0f;
        let state = match AccessState::from_code(code) {
            // Transitioning is the target's to enter, never asked for.
            Some(AccessState::Transitioning) | None => {
                return Err(Sense::invalid_param_field(offset as u16, Some(3)))
            }
            Some(s) => s,
        };
        each(SetDescriptor {
            state,
            group_id: list.be16(offset + 2),
            offset: offset as u16,
        })?;
        offset += 4;
    }
    Ok(())
}

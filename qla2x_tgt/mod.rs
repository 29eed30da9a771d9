// SPDX-License-Identifier: GPL-2.0

//! qla2x_tgt: the QLogic Fibre Channel target driver, through the
//! target-mode template of the kernel's qla2xxx. Status: not started.

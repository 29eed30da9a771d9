// SPDX-License-Identifier: GPL-2.0

//! scst_iscsi: the iSCSI target driver, all in the kernel (portal, login and
//! negotiation, discovery, CHAP, digests, the full feature phase).
//!
//! Status: only the PDU framing exists (`pdu.rs`, tested on the host); it
//! joins the module with the receive path.

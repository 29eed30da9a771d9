// SPDX-License-Identifier: GPL-2.0

//! Writes the seed corpora of the fuzz targets into `seeds/<target>/`:
//! `cargo run --example seeds`. Each seed is a known-good exchange in the
//! target's input format (see the fuzz targets' documentation).

use std::fs;
use std::path::Path;

use scst_fuzz::text_config::*;
use scst_fuzz::*;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

// ---------------------------------------------------------------------------
// pdu: a header, a limit selector, then bytes for the encoders.

fn header(fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    for (at, bytes) in fields {
        b[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    b
}

const LUN: [u8; 8] = [0, 1, 0, 0, 0, 0, 0, 0];

fn pdu_seeds() {
    let tail: Vec<u8> = (0u8..=255).collect();
    let cdb = [0x28, 0, 0, 0, 0, 0x10, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
    let seeds: [(&str, Vec<u8>); 8] = [
        // READ(10) of 8 blocks: immediate, final, read, simple attribute.
        (
            "scsi_command",
            header(&[
                (0, &[0x41, 0xc1]),
                (8, &LUN),
                (16, &[0, 0, 0, 0x10]),
                (20, &[0, 0, 0x10, 0]),
                (24, &[0, 0, 0, 1]),
                (28, &[0, 0, 0, 1]),
                (32, &cdb),
            ]),
        ),
        // A Login Request with 96 bytes of text, stage 0 to 1.
        (
            "login_request",
            header(&[
                (0, &[0x43, 0x81, 0, 0, 0, 0, 0, 96]),
                (8, &[0x40, 0, 0x01, 0x37, 0, 0x01]),
                (16, &[0, 0, 0, 1]),
                (24, &[0, 0, 0, 1]),
            ]),
        ),
        // A Text Request, SendTargets=All (16 bytes).
        (
            "text_request",
            header(&[
                (0, &[0x44, 0x80, 0, 0, 0, 0, 0, 16]),
                (16, &[0, 0, 0, 2]),
                (20, &[0xff; 4]),
                (24, &[0, 0, 0, 2]),
                (28, &[0, 0, 0, 2]),
            ]),
        ),
        (
            "nop_out",
            header(&[
                (0, &[0x40, 0x80]),
                (16, &[0xde, 0xad, 0xbe, 0xef]),
                (20, &[0xff; 4]),
            ]),
        ),
        (
            "data_out",
            header(&[
                (0, &[0x05, 0x80, 0, 0, 0, 0, 0x20, 0]),
                (8, &LUN),
                (16, &[0, 0, 0, 0x10]),
                (20, &[0, 0, 0, 7]),
                (36, &[0, 0, 0, 1]),
                (40, &[0, 0, 0x20, 0]),
            ]),
        ),
        (
            "task_mgmt",
            header(&[
                (0, &[0x42, 0x81]),
                (8, &LUN),
                (16, &[0, 0, 0, 0x11]),
                (20, &[0, 0, 0, 0x10]),
            ]),
        ),
        ("logout", header(&[(0, &[0x46, 0x81]), (20, &[0, 1])])),
        (
            "snack",
            header(&[(0, &[0x10, 0x81]), (20, &[0xff; 4]), (44, &[0, 0, 0, 2])]),
        ),
    ];
    for (i, (name, mut h)) in seeds.into_iter().enumerate() {
        // Limit selector: 8192; then bytes for the encoders and digests.
        h.push(0);
        h.extend_from_slice(&tail[i * 16..]);
        write("pdu", name, &h);
    }
}

// ---------------------------------------------------------------------------
// login: config, storage and buffer sizes, then requests.

struct LoginSeed(Vec<u8>);

impl LoginSeed {
    fn new(config: u8) -> Self {
        // 128 KiB of storage, an 8192-byte response buffer.
        Self(vec![config, 4, 4])
    }

    fn step(mut self, transit: bool, cont: bool, csg: u8, nsg: u8, keys: &[(&str, &str)]) -> Self {
        self.0.push(0);
        self.0.push(login_flags(transit, cont, csg, nsg));
        put_segment(&mut self.0, &text(keys));
        self
    }

    fn raw(mut self, transit: bool, csg: u8, nsg: u8, keys: &[(&str, &str)]) -> Self {
        self.0.push(LOGIN_STEP_RAW);
        self.0
            .extend_from_slice(&login_header(login_flags(transit, false, csg, nsg)));
        put_segment(&mut self.0, &text(keys));
        self
    }
}

fn leading(session: &str) -> Vec<(&'static str, &str)> {
    let mut keys = vec![("InitiatorName", INITIATOR), ("SessionType", session)];
    if session == "Normal" {
        keys.push(("TargetName", TARGET));
    }
    keys
}

fn operational() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("X-com.example.unknown", "1"),
    ]
}

fn with(
    mut keys: Vec<(&'static str, &'static str)>,
    more: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    keys.extend_from_slice(more);
    keys
}

fn login_seeds() {
    let mut normal = leading("Normal");
    normal.push(("AuthMethod", "None"));
    write(
        "login",
        "normal_no_auth",
        &LoginSeed::new(0)
            .step(true, false, 0, 1, &normal)
            .step(true, false, 1, 3, &operational())
            .0,
    );

    let mut chap = leading("Normal");
    chap.push(("AuthMethod", "CHAP,None"));
    write(
        "login",
        "mutual_chap",
        &LoginSeed::new(Config::CHAP | Config::MUTUAL)
            .step(false, false, 0, 1, &chap)
            .step(false, false, 0, 1, &[("CHAP_A", "7,6,5")])
            .step(
                true,
                false,
                0,
                1,
                &[
                    ("CHAP_N", CHAP_USER),
                    ("CHAP_R", "?"),
                    ("CHAP_I", "9"),
                    ("CHAP_C", "?"),
                ],
            )
            .step(true, false, 1, 3, &operational())
            .0,
    );

    write(
        "login",
        "discovery",
        &LoginSeed::new(0)
            .step(
                true,
                false,
                1,
                3,
                &with(
                    leading("Discovery"),
                    &[("HeaderDigest", "CRC32C,None"), ("MaxBurstLength", "512")],
                ),
            )
            .0,
    );

    // The target offers digests and its numbers; the initiator answers.
    write(
        "login",
        "offers",
        &LoginSeed::new(Config::OFFERS | Config::HEADER_REQUIRED | 0x20)
            .step(
                true,
                false,
                1,
                3,
                &with(leading("Normal"), &[("DataDigest", "None,CRC32C")]),
            )
            .step(
                true,
                false,
                1,
                3,
                &[
                    ("HeaderDigest", "CRC32C"),
                    ("InitialR2T", "No"),
                    ("ImmediateData", "No"),
                    ("MaxBurstLength", "524288"),
                    ("FirstBurstLength", "Reject"),
                    ("MaxOutstandingR2T", "2"),
                ],
            )
            .0,
    );

    // The text in two requests (C=1, then C=0), and a raw header.
    let mut all = leading("Normal");
    all.extend(operational());
    let t = text(&all);
    let (a, b) = t.split_at(t.len() / 2);
    let mut seed = LoginSeed::new(0);
    seed.0
        .extend_from_slice(&[0, login_flags(false, true, 1, 3)]);
    put_segment(&mut seed.0, a);
    seed.0
        .extend_from_slice(&[0, login_flags(true, false, 1, 3)]);
    put_segment(&mut seed.0, b);
    write("login", "split_text", &seed.0);

    write(
        "login",
        "raw_header",
        &LoginSeed::new(Config::CHAP)
            .raw(
                false,
                0,
                1,
                &with(leading("Normal"), &[("AuthMethod", "CHAP")]),
            )
            .raw(false, 0, 1, &[("CHAP_A", "5")])
            .raw(true, 0, 3, &[("CHAP_N", CHAP_USER), ("CHAP_R", "?")])
            .raw(true, 1, 3, &[])
            .0,
    );
}

// ---------------------------------------------------------------------------
// text: session, sizes, then requests.

struct TextSeed(Vec<u8>);

impl TextSeed {
    /// 128 KiB of storage, a 9000-byte buffer, transmit cap and session
    /// limit 8192.
    fn new(flags: u8) -> Self {
        Self(vec![flags, 4, 5, 0, 0, 0x40])
    }

    fn step(mut self, step: u8, data: &[u8]) -> Self {
        self.0.push(step);
        put_segment(&mut self.0, data);
        self
    }
}

fn text_seeds() {
    write(
        "text",
        "send_targets_all",
        &TextSeed::new(DISCOVERY)
            .step(FINAL, &text(&[("SendTargets", "All")]))
            .0,
    );
    write(
        "text",
        "send_targets_pieces",
        &TextSeed::new(DISCOVERY | MANY)
            .step(
                FINAL,
                &text(&[("SendTargets", "All"), ("MaxRecvDataSegmentLength", "512")]),
            )
            .step(FINAL | TTT_LAST, &[])
            .step(FINAL | TTT_LAST, &[])
            .step(FINAL | TTT_LAST, &[])
            .0,
    );
    write(
        "text",
        "normal_session",
        &TextSeed::new(0)
            .step(
                FINAL,
                &text(&[
                    ("SendTargets", ""),
                    ("MaxRecvDataSegmentLength", "4096"),
                    ("X-com.example.unknown", "1"),
                    ("InitiatorAlias", "host"),
                    ("MaxBurstLength", "512"),
                ]),
            )
            .0,
    );
    let t = text(&[("SendTargets", TARGET), ("TargetName", TARGET)]);
    let (a, b) = t.split_at(9);
    write(
        "text",
        "continued",
        &TextSeed::new(DISCOVERY | SECOND_INITIATOR)
            .step(CONT, a)
            .step(FINAL | TTT_LAST, b)
            .step(0, &text(&[("SendTargets", ACL_TARGET)]))
            .0,
    );
    write(
        "text",
        "values",
        &TextSeed::new(0)
            .step(
                FINAL,
                &text(&[
                    ("A", "0x1f"),
                    ("B", "0bAQID"),
                    ("C", "18446744073709551615"),
                    ("D", "Yes"),
                    ("E", "5,6,7"),
                ]),
            )
            .0,
    );
}

fn main() {
    pdu_seeds();
    login_seeds();
    text_seeds();
}

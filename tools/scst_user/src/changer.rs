// SPDX-License-Identifier: GPL-2.0

//! A virtual tape library: a media changer (SMC-3) whose cartridges are
//! tape files in one directory, named by their barcodes, and whose drives
//! are [`Bay`]s that load the cartridge the changer moves into them as a
//! [`Tape`].
//!
//! Element addresses: the picker (medium transport) at 0, one
//! import/export slot at 0x10, the drives (data transfer) from 0x100, the
//! storage slots from 0x1000.

use crate::scsi::{
    be16, cdb_len_of, inquiry, invalid_field, invalid_opcode, mode_data, put, Identity, ModeSense,
    Outcome, ILLEGAL_REQUEST, NOT_READY, SAM_5, SPC_4, UNIT_ATTENTION,
};
use crate::tape::{drive_inquiry, Tape};
use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// SMC-3's version descriptor.
const SMC_3: u16 = 0x0480;

const TRANSPORT: u16 = 0x0000;
const IMPORT_EXPORT: u16 = 0x0010;
const FIRST_DRIVE: u16 = 0x0100;
const FIRST_SLOT: u16 = 0x1000;

/// Element type codes (SMC-3 table 7).
const TYPE_TRANSPORT: u8 = 1;
const TYPE_STORAGE: u8 = 2;
const TYPE_IMPORT_EXPORT: u8 = 3;
const TYPE_DRIVE: u8 = 4;

/// Bytes of a primary volume tag: the volume identifier and its sequence
/// number.
const VOLTAG_LEN: usize = 36;
/// Longest barcode: the volume identifier field.
pub const MAX_BARCODE: usize = 32;

/// A drive of the library: empty, or holding a cartridge as a tape.
pub struct Bay {
    state: Mutex<BayState>,
    serial: String,
}

struct BayState {
    tape: Option<Tape>,
    /// NOT READY TO READY CHANGE owed after a cartridge came in.
    changed: bool,
}

impl Bay {
    /// An empty drive.
    pub fn new(serial: String) -> Self {
        Self {
            state: Mutex::new(BayState {
                tape: None,
                changed: false,
            }),
            serial,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BayState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Executes one command: the tape's, or an empty drive's answer.
    pub fn exec(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let op = cdb.first().copied().unwrap_or(0);
        let mut st = self.lock();
        if op != 0x12 && st.changed {
            st.changed = false;
            return Outcome::check(UNIT_ATTENTION, 0x28, 0x00);
        }
        if let Some(tape) = &st.tape {
            return tape.exec(cdb, data);
        }
        match op {
            0x12 => drive_inquiry(cdb, data, &self.serial),
            // PREVENT ALLOW MEDIUM REMOVAL: nothing to lock.
            0x1e => Outcome::good(0),
            _ if cdb.len() < cdb_len_of(op) => invalid_field(),
            // MEDIUM NOT PRESENT.
            _ => Outcome::check(NOT_READY, 0x3a, 0x00),
        }
    }

    /// Whether it holds a cartridge.
    pub fn loaded(&self) -> bool {
        self.lock().tape.is_some()
    }

    fn insert(&self, tape: Tape) {
        let mut st = self.lock();
        st.tape = Some(tape);
        st.changed = true;
    }

    fn eject(&self) {
        let mut st = self.lock();
        st.tape = None;
        st.changed = false;
    }
}

/// A cartridge: its barcode, which names its file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cartridge {
    barcode: String,
    /// The storage slot it came from, where a drive returns it.
    home: u16,
}

struct Elements {
    slots: Vec<Option<Cartridge>>,
    mailslot: Option<Cartridge>,
    drives: Vec<Option<Cartridge>>,
}

/// The media changer.
pub struct Library {
    elements: Mutex<Elements>,
    bays: Vec<Arc<Bay>>,
    dir: PathBuf,
    capacity: u64,
    serial: String,
}

/// Where an element address points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    Transport,
    ImportExport,
    Drive(usize),
    Slot(usize),
}

impl Library {
    /// A library of `bays` drives and `slots` storage slots, whose first
    /// slots hold the cartridges `barcodes` (files `dir/BARCODE.cart`,
    /// formatted with `capacity` bytes when first loaded).
    pub fn new(
        bays: Vec<Arc<Bay>>,
        slots: usize,
        barcodes: &[String],
        dir: PathBuf,
        capacity: u64,
        serial: String,
    ) -> io::Result<Self> {
        if barcodes.len() > slots || slots > 0x1000 || bays.len() > 0x100 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more cartridges than slots, or too many elements",
            ));
        }
        for b in barcodes {
            if b.is_empty()
                || b.len() > MAX_BARCODE
                || !b
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad barcode {b:?}: 1-32 letters, digits, - or _"),
                ));
            }
        }
        let mut s: Vec<Option<Cartridge>> = vec![None; slots];
        for (i, b) in barcodes.iter().enumerate() {
            s[i] = Some(Cartridge {
                barcode: b.clone(),
                home: FIRST_SLOT + i as u16,
            });
        }
        let drives = vec![None; bays.len()];
        Ok(Self {
            elements: Mutex::new(Elements {
                slots: s,
                mailslot: None,
                drives,
            }),
            bays,
            dir,
            capacity,
            serial,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Elements> {
        self.elements.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn element(&self, el: &Elements, addr: u16) -> Option<Element> {
        match addr {
            TRANSPORT => Some(Element::Transport),
            IMPORT_EXPORT => Some(Element::ImportExport),
            a if a >= FIRST_SLOT && usize::from(a - FIRST_SLOT) < el.slots.len() => {
                Some(Element::Slot(usize::from(a - FIRST_SLOT)))
            }
            a if a >= FIRST_DRIVE && usize::from(a - FIRST_DRIVE) < el.drives.len() => {
                Some(Element::Drive(usize::from(a - FIRST_DRIVE)))
            }
            _ => None,
        }
    }

    /// Executes one command.
    pub fn exec(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let op = cdb.first().copied().unwrap_or(0);
        if cdb.len() < cdb_len_of(op) {
            return invalid_field();
        }
        match op {
            0x12 => inquiry(
                cdb,
                data,
                &Identity {
                    dev_type: 0x08,
                    removable: true,
                    product: "VIRTUAL LIBRARY",
                    serial: &self.serial,
                    versions: &[SAM_5, SPC_4, SMC_3],
                    vpd: &[],
                },
            ),
            // TEST UNIT READY; PREVENT ALLOW MEDIUM REMOVAL (of the
            // import/export slot: nothing to lock); INITIALIZE ELEMENT
            // STATUS (WITH RANGE): the inventory is always known;
            // POSITION TO ELEMENT: the picker has no place to be.
            0x00 | 0x1e | 0x07 | 0x37 | 0x2b => Outcome::good(0),
            0x1a | 0x5a => self.mode_sense(cdb, data),
            0xa5 => self.move_medium(cdb),
            0xb8 => self.read_element_status(cdb, data),
            _ => invalid_opcode(),
        }
    }

    /// MODE SENSE: the element address assignment, transport geometry
    /// and device capabilities pages.
    fn mode_sense(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let ModeSense {
            ten,
            page,
            changeable,
            alloc,
            ..
        } = match ModeSense::parse(cdb) {
            Ok(m) => m,
            Err(refused) => return refused,
        };
        let (slots, drives) = {
            let el = self.lock();
            (el.slots.len() as u16, el.drives.len() as u16)
        };
        let mut pages = Vec::new();
        if page == 0x1d || page == 0x3f {
            let mut p = vec![0u8; 20];
            p[0] = 0x1d;
            p[1] = 18;
            if !changeable {
                for (at, (first, n)) in [
                    (TRANSPORT, 1),
                    (FIRST_SLOT, slots),
                    (IMPORT_EXPORT, 1),
                    (FIRST_DRIVE, drives),
                ]
                .into_iter()
                .enumerate()
                {
                    p[2 + 4 * at..4 + 4 * at].copy_from_slice(&first.to_be_bytes());
                    p[4 + 4 * at..6 + 4 * at].copy_from_slice(&n.to_be_bytes());
                }
            }
            pages.extend_from_slice(&p);
        }
        if page == 0x1e || page == 0x3f {
            // One transport; it cannot turn a cartridge over.
            pages.extend_from_slice(&[0x1e, 2, 0, 0]);
        }
        if page == 0x1f || page == 0x3f {
            let mut p = vec![0u8; 20];
            p[0] = 0x1f;
            p[1] = 18;
            if !changeable {
                // Every element type stores media; any may go to any.
                p[2] = 0x0f;
                p[4..8].fill(0x0f);
            }
            pages.extend_from_slice(&p);
        }
        if pages.is_empty() {
            return invalid_field();
        }
        let d = mode_data(ten, 0, &[], &pages);
        Outcome::good(put(data, &d, alloc))
    }

    /// MOVE MEDIUM: a cartridge from one element to another; into a
    /// drive, it loads; out of one, the drive lets it go.
    fn move_medium(&self, cdb: &[u8]) -> Outcome {
        let transport = be16(cdb, 2) as u16;
        let (src, dst) = (be16(cdb, 4) as u16, be16(cdb, 6) as u16);
        if cdb[10] & 0x01 != 0 {
            // INVERT: the cartridges have one side.
            return invalid_field();
        }
        let mut el = self.lock();
        let (Some(from), Some(to)) = (self.element(&el, src), self.element(&el, dst)) else {
            return Outcome::check(ILLEGAL_REQUEST, 0x21, 0x01);
        };
        if transport != TRANSPORT || from == Element::Transport || to == Element::Transport {
            return Outcome::check(ILLEGAL_REQUEST, 0x21, 0x01);
        }
        if from == to {
            return match slot_of(&mut el, from) {
                Some(Some(_)) => Outcome::good(0),
                _ => Outcome::check(ILLEGAL_REQUEST, 0x3b, 0x0e),
            };
        }
        if slot_of(&mut el, to).is_some_and(|s| s.is_some()) {
            // MEDIUM DESTINATION ELEMENT FULL.
            return Outcome::check(ILLEGAL_REQUEST, 0x3b, 0x0d);
        }
        let Some(Some(cart)) = slot_of(&mut el, from).map(|s| s.take()) else {
            // MEDIUM SOURCE ELEMENT EMPTY.
            return Outcome::check(ILLEGAL_REQUEST, 0x3b, 0x0e);
        };
        if let Element::Drive(d) = to {
            match self.open(&cart.barcode, d) {
                Ok(tape) => self.bays[d].insert(tape),
                Err(e) => {
                    eprintln!("scst-user-vtl: cartridge {}: {e}", cart.barcode);
                    if let Some(s) = slot_of(&mut el, from) {
                        *s = Some(cart);
                    }
                    // MEDIUM LOAD OR EJECT FAILED.
                    return Outcome::check(crate::scsi::MEDIUM_ERROR, 0x53, 0x00);
                }
            }
        }
        if let Element::Drive(d) = from {
            self.bays[d].eject();
        }
        let mut cart = cart;
        if let Element::Slot(i) = to {
            cart.home = FIRST_SLOT + i as u16;
        }
        if let Some(s) = slot_of(&mut el, to) {
            *s = Some(cart);
        }
        Outcome::good(0)
    }

    /// The cartridge `barcode` as a tape in drive `drive`.
    fn open(&self, barcode: &str, drive: usize) -> io::Result<Tape> {
        let path = self.dir.join(format!("{barcode}.cart"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Tape::open(file, self.capacity, None, self.bays[drive].serial.clone())
    }

    /// READ ELEMENT STATUS: the elements of the requested type from the
    /// starting address on, with their barcodes if VOLTAG.
    fn read_element_status(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let voltag = cdb[1] & 0x10 != 0;
        let wanted = cdb[1] & 0x0f;
        let start = be16(cdb, 2) as u16;
        let count = be16(cdb, 4) as usize;
        let alloc = (usize::from(cdb[7]) << 16) | (usize::from(cdb[8]) << 8) | usize::from(cdb[9]);
        if wanted > TYPE_DRIVE {
            return invalid_field();
        }
        let el = self.lock();
        // Every element in address order: the picker, the import/export
        // slot, the drives, the storage slots.
        let mut all: Vec<(u8, u16, Option<&Cartridge>)> = vec![
            (TYPE_TRANSPORT, TRANSPORT, None),
            (TYPE_IMPORT_EXPORT, IMPORT_EXPORT, el.mailslot.as_ref()),
        ];
        all.extend(
            el.drives
                .iter()
                .enumerate()
                .map(|(i, c)| (TYPE_DRIVE, FIRST_DRIVE + i as u16, c.as_ref())),
        );
        all.extend(
            el.slots
                .iter()
                .enumerate()
                .map(|(i, c)| (TYPE_STORAGE, FIRST_SLOT + i as u16, c.as_ref())),
        );
        let chosen: Vec<_> = all
            .into_iter()
            .filter(|(t, a, _)| (wanted == 0 || *t == wanted) && *a >= start)
            .take(count)
            .collect();
        if chosen.is_empty() {
            return Outcome::check(ILLEGAL_REQUEST, 0x21, 0x01);
        }
        let desc_len = 12 + if voltag { VOLTAG_LEN } else { 0 };
        let mut body = Vec::new();
        let mut i = 0;
        while i < chosen.len() {
            let kind = chosen[i].0;
            let run = chosen[i..].iter().take_while(|e| e.0 == kind).count();
            body.push(kind);
            body.push(if voltag { 0x80 } else { 0 });
            body.extend_from_slice(&(desc_len as u16).to_be_bytes());
            body.push(0);
            body.extend_from_slice(&((run * desc_len) as u32).to_be_bytes()[1..]);
            for &(_, addr, cart) in &chosen[i..i + run] {
                let mut d = vec![0u8; desc_len];
                d[..2].copy_from_slice(&addr.to_be_bytes());
                let full = u8::from(cart.is_some());
                d[2] = match kind {
                    TYPE_TRANSPORT => full,
                    // INENAB and EXENAB; ACCESS.
                    TYPE_IMPORT_EXPORT => 0x30 | 0x08 | full,
                    _ => 0x08 | full,
                };
                if let Some(c) = cart {
                    d[9] = 0x80; // SVALID
                    d[10..12].copy_from_slice(&c.home.to_be_bytes());
                    if voltag {
                        let mut tag = [b' '; MAX_BARCODE];
                        tag[..c.barcode.len()].copy_from_slice(c.barcode.as_bytes());
                        d[12..12 + MAX_BARCODE].copy_from_slice(&tag);
                    }
                }
                body.extend_from_slice(&d);
            }
            i += run;
        }
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&chosen[0].1.to_be_bytes());
        out.extend_from_slice(&(chosen.len() as u16).to_be_bytes());
        out.push(0);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        Outcome::good(put(data, &out, alloc))
    }
}

/// The storage place of `e` (none for the picker, which never holds a
/// cartridge between commands).
fn slot_of(el: &mut Elements, e: Element) -> Option<&mut Option<Cartridge>> {
    match e {
        Element::Transport => None,
        Element::ImportExport => Some(&mut el.mailslot),
        Element::Drive(d) => el.drives.get_mut(d),
        Element::Slot(s) => el.slots.get_mut(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::CHECK_CONDITION;

    fn library(dir: &std::path::Path) -> (Library, Vec<Arc<Bay>>) {
        let bays: Vec<_> = (0..2)
            .map(|i| Arc::new(Bay::new(format!("D{i}"))))
            .collect();
        let barcodes: Vec<String> = (0..3).map(|i| format!("VT{i:04}L5")).collect();
        let lib = Library::new(
            bays.clone(),
            5,
            &barcodes,
            dir.to_path_buf(),
            1 << 20,
            "LIB".into(),
        )
        .unwrap();
        (lib, bays)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scst-vtl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn res(lib: &Library, voltag: bool) -> Vec<u8> {
        let mut data = vec![0u8; 4096];
        let cdb = [
            0xb8,
            if voltag { 0x10 } else { 0 },
            0,
            0,
            0xff,
            0xff,
            0,
            0,
            0x10,
            0,
            0,
            0,
        ];
        let o = lib.exec(&cdb, &mut data);
        assert_eq!(o.status, crate::scsi::GOOD);
        data.truncate(o.data_in);
        data
    }

    fn mv(lib: &Library, src: u16, dst: u16) -> Outcome {
        let mut cdb = [0u8; 12];
        cdb[0] = 0xa5;
        cdb[4..6].copy_from_slice(&src.to_be_bytes());
        cdb[6..8].copy_from_slice(&dst.to_be_bytes());
        lib.exec(&cdb, &mut [])
    }

    #[test]
    fn element_status_reports_every_element_with_barcodes() {
        let dir = tmpdir("res");
        let (lib, _) = library(&dir);
        let d = res(&lib, true);
        // 1 picker, 1 mailslot, 2 drives, 5 slots.
        assert_eq!(be16(&d, 0), 0);
        assert_eq!(be16(&d, 2), 9);
        let desc = 12 + VOLTAG_LEN;
        // Header, then four pages: picker, mailslot, drives, slots.
        assert_eq!(d.len(), 8 + 4 * 8 + 9 * desc);
        let slots_page = 8 + 3 * 8 + 4 * desc;
        assert_eq!(d[slots_page], TYPE_STORAGE);
        assert_eq!(d[slots_page + 1], 0x80);
        let first = slots_page + 8;
        assert_eq!(be16(&d, first) as u16, FIRST_SLOT);
        assert_eq!(d[first + 2] & 1, 1);
        assert_eq!(&d[first + 12..first + 20], b"VT0000L5");
        let fourth = first + 3 * desc;
        assert_eq!(d[fourth + 2] & 1, 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn moves_load_and_unload_drives() {
        let dir = tmpdir("move");
        let (lib, bays) = library(&dir);
        assert!(mv(&lib, FIRST_SLOT, FIRST_DRIVE).status == crate::scsi::GOOD);
        assert!(bays[0].loaded());
        // The new cartridge: a unit attention first, then a ready tape.
        let o = bays[0].exec(&[0; 6], &mut []);
        assert_eq!(
            (o.status, o.sense[2], o.sense[12]),
            (CHECK_CONDITION, 6, 0x28)
        );
        assert_eq!(bays[0].exec(&[0; 6], &mut []).status, crate::scsi::GOOD);
        // Full destination, empty source, bad address.
        assert_eq!(
            mv(&lib, FIRST_SLOT + 1, FIRST_DRIVE).sense[12..14],
            [0x3b, 0x0d]
        );
        assert_eq!(
            mv(&lib, FIRST_SLOT, FIRST_DRIVE + 1).sense[12..14],
            [0x3b, 0x0e]
        );
        assert_eq!(
            mv(&lib, 0x7777, FIRST_DRIVE + 1).sense[12..14],
            [0x21, 0x01]
        );
        // Back to another slot; the drive is empty again.
        assert_eq!(
            mv(&lib, FIRST_DRIVE, FIRST_SLOT + 4).status,
            crate::scsi::GOOD
        );
        assert!(!bays[0].loaded());
        let o = bays[0].exec(&[0; 6], &mut []);
        assert_eq!((o.sense[2], o.sense[12]), (NOT_READY, 0x3a));
        assert!(dir.join("VT0000L5.cart").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn element_address_assignment_page() {
        let dir = tmpdir("mode");
        let (lib, _) = library(&dir);
        let mut data = vec![0u8; 255];
        let o = lib.exec(&[0x1a, 0x08, 0x1d, 0, 255, 0], &mut data);
        assert_eq!(o.status, crate::scsi::GOOD);
        let p = &data[4..24];
        assert_eq!((p[0], p[1]), (0x1d, 18));
        assert_eq!([be16(p, 2), be16(p, 4)], [0, 1]);
        assert_eq!([be16(p, 6), be16(p, 8)], [u64::from(FIRST_SLOT), 5]);
        assert_eq!([be16(p, 10), be16(p, 12)], [u64::from(IMPORT_EXPORT), 1]);
        assert_eq!([be16(p, 14), be16(p, 16)], [u64::from(FIRST_DRIVE), 2]);
        let _ = std::fs::remove_dir_all(dir);
    }
}

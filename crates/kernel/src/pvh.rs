//! Whether an ELF `vmlinux` has a PVH entry point (the Xen ELF note
//! `XEN_ELFNOTE_PHYS32_ENTRY`): QEMU then boots it directly in 32-bit protected mode,
//! skipping the bzImage's real-mode setup and decompression, which under TCG costs a
//! third of a second per boot. Read from the file's program headers and note segments
//! only (a few KiB of a 50 MB file), with every offset and size checked: the vmlinux came
//! out of an image that is hostile input.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// More program headers, or a larger note segment, than any kernel has: not read.
const MAX_PROGRAM_HEADERS: u16 = 64;
const MAX_NOTE_BYTES: u64 = 64 * 1024;

/// Does the ELF64 little-endian file at `path` carry a PVH entry note? `false` for
/// anything that cannot be read or is not such a file.
pub fn has_pvh_entry(path: &Path) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    pvh_entry(&mut file).unwrap_or(false)
}

fn pvh_entry(file: &mut (impl Read + Seek)) -> std::io::Result<bool> {
    let mut header = [0u8; 64];
    file.read_exact(&mut header)?;
    // ELF magic, 64-bit, little-endian.
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Ok(false);
    }
    let phoff = u64::from_le_bytes(header[0x20..0x28].try_into().expect("8 bytes"));
    let phentsize = u16::from_le_bytes([header[0x36], header[0x37]]);
    let phnum = u16::from_le_bytes([header[0x38], header[0x39]]);
    if phentsize < 56 || phnum > MAX_PROGRAM_HEADERS {
        return Ok(false);
    }
    let mut headers = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut headers)?;
    for ph in headers.chunks_exact(usize::from(phentsize)) {
        let p_type = u32::from_le_bytes(ph[0..4].try_into().expect("4 bytes"));
        if p_type != PT_NOTE {
            continue;
        }
        let offset = u64::from_le_bytes(ph[0x08..0x10].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(ph[0x20..0x28].try_into().expect("8 bytes"));
        if size > MAX_NOTE_BYTES {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut notes)?;
        if notes_have_pvh_entry(&notes) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Walks a note segment: `namesz`, `descsz`, `type`, then the name and the descriptor,
/// each padded to 4 bytes.
fn notes_have_pvh_entry(mut notes: &[u8]) -> bool {
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let word = |at: usize| u32::from_le_bytes(notes[at..at + 4].try_into().expect("4 bytes"));
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let Some(len) = pad(namesz).checked_add(pad(descsz)).and_then(|n| n.checked_add(12))
        else {
            return false;
        };
        if len > notes.len() {
            return false;
        }
        let name = &notes[12..12 + namesz];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" {
            return true;
        }
        notes = &notes[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(name);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(desc);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut elf[64..];
        ph[0..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[0x08..0x10].copy_from_slice(&120u64.to_le_bytes());
        ph[0x20..0x28].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        elf.extend_from_slice(notes);
        elf
    }

    #[test]
    fn finds_the_xen_phys32_entry_note_among_others() {
        let mut notes = note(b"GNU\0", 3, &[1; 20]);
        notes.extend(note(b"Xen\0", 17, &[0; 8]));
        assert!(!pvh_entry(&mut std::io::Cursor::new(elf_with_notes(&notes))).unwrap());
        notes.extend(note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]));
        assert!(pvh_entry(&mut std::io::Cursor::new(elf_with_notes(&notes))).unwrap());
        // Another owner's note of the same type is not the entry point.
        let other = note(b"Linux\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]);
        assert!(!pvh_entry(&mut std::io::Cursor::new(elf_with_notes(&other))).unwrap());
    }

    #[test]
    fn malformed_files_are_not_pvh() {
        // A note whose sizes run past the segment.
        let mut bad = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]);
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!pvh_entry(&mut std::io::Cursor::new(elf_with_notes(&bad))).unwrap());
        // Program headers past the end of the file.
        let mut elf = elf_with_notes(&[]);
        elf[0x20..0x28].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(pvh_entry(&mut std::io::Cursor::new(elf)).is_err());
        assert!(!pvh_entry(&mut std::io::Cursor::new(b"MZ not an elf".repeat(8))).unwrap());
        assert!(!has_pvh_entry(Path::new("/nonexistent/vmlinux")));
    }
}

//! A writer of cpio archives in the "newc" format, which the kernel unpacks as an
//! initramfs. Archives can be concatenated: the per-VM part is appended to the cached
//! per-kernel part.

use std::io::{self, Write};

const TRAILER: &str = "TRAILER!!!";

pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_inode: 1,
            written: 0,
        }
    }

    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += pad as u64;
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let inode = self.next_inode;
        self.next_inode += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{inode:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0, // uid
            0, // gid
            0, // mtime: reproducible archives
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.write_all(header.as_bytes())?;
        self.written += header.len() as u64;
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        self.write_padded(&name_bytes)?;
        self.write_padded(data)
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, 0o040000 | (perm & 0o7777), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | (perm & 0o7777), data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120777, target.as_bytes())
    }

    /// Ends the archive (and pads it to 512 bytes, as cpio does); returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(TRAILER, 0, &[])?;
        let pad = (512 - (self.written % 512) as usize) % 512;
        self.out.write_all(&vec![0u8; pad])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

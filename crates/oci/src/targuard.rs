//! A pass-through reader that follows a tar stream's headers as the `tar` crate reads
//! them, and refuses an extended header (PAX `x`/`g`, GNU long name `L` or long link `K`)
//! larger than [`MAX_EXTENDED_HEADER`] before the crate buffers it in memory: the crate
//! reads such headers whole, so a tiny compressed layer could claim gigabytes.
//!
//! It mirrors the crate's layout rules: 512-byte headers, data rounded up to 512 bytes,
//! sizes in octal or base-256, a PAX `size` record overriding the next entry's size, GNU
//! sparse headers followed by extension headers, and the end at the first zero block.

use std::io::{self, Read};

/// The largest extended header accepted (real ones hold a few long names or xattrs).
pub const MAX_EXTENDED_HEADER: u64 = 1 << 20;
const BLOCK: usize = 512;

/// Why a stream was refused (carried inside the `io::Error` the reader returns).
#[derive(Debug, thiserror::Error)]
#[error(
    "its tar stream holds {kind} of {size} bytes at offset {offset}, more than the {limit} bytes accepted (real ones are a few KiB): the layer is hostile or broken"
)]
pub struct ExtendedHeaderTooLarge {
    pub kind: &'static str,
    pub size: u64,
    pub offset: u64,
    pub limit: u64,
}

pub struct TarGuard<R> {
    inner: R,
    /// Bytes of the stream seen so far.
    pos: u64,
    /// Data (and padding) of the current member still to pass before the next header.
    skip: u64,
    header: [u8; BLOCK],
    filled: usize,
    /// GNU sparse extension headers follow.
    sparse_ext: bool,
    /// The PAX records being read, and how many bytes of them remain.
    pax: Option<(Vec<u8>, u64)>,
    /// A PAX `size` for the next entry.
    next_size: Option<u64>,
    /// Past the end of the archive, or somewhere the crate itself will refuse.
    done: bool,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            pos: 0,
            skip: 0,
            header: [0; BLOCK],
            filled: 0,
            sparse_ext: false,
            pax: None,
            next_size: None,
            done: false,
        }
    }

    fn inspect(&mut self, mut data: &[u8]) -> Result<(), ExtendedHeaderTooLarge> {
        while !data.is_empty() && !self.done {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some((records, left)) = &mut self.pax {
                    let take = (*left).min(n as u64) as usize;
                    records.extend_from_slice(&data[..take]);
                    *left -= take as u64;
                }
                self.skip -= n as u64;
                self.pos += n as u64;
                data = &data[n..];
                if let Some((records, 0)) = &self.pax {
                    self.next_size = pax_size(records);
                    self.pax = None;
                }
                continue;
            }
            let n = (BLOCK - self.filled).min(data.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            self.pos += n as u64;
            data = &data[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> Result<(), ExtendedHeaderTooLarge> {
        let h = self.header;
        if self.sparse_ext {
            self.sparse_ext = h[504] != 0;
            return Ok(());
        }
        if h.iter().all(|b| *b == 0) {
            self.done = true;
            return Ok(());
        }
        let Some(mut size) = numeric(&h[124..136]) else {
            // The crate refuses this header itself.
            self.done = true;
            return Ok(());
        };
        let typeflag = h[156];
        let kind = match typeflag {
            b'x' => Some("a PAX extended header"),
            b'g' => Some("a PAX global header"),
            b'L' => Some("a GNU long name"),
            b'K' => Some("a GNU long link name"),
            _ => None,
        };
        match kind {
            Some(kind) => {
                if size > MAX_EXTENDED_HEADER {
                    return Err(ExtendedHeaderTooLarge {
                        kind,
                        size,
                        offset: self.pos - BLOCK as u64,
                        limit: MAX_EXTENDED_HEADER,
                    });
                }
                if typeflag == b'x' {
                    self.pax = Some((Vec::with_capacity(size as usize), size));
                    if size == 0 {
                        self.next_size = None;
                        self.pax = None;
                    }
                }
            }
            None => {
                if let Some(s) = self.next_size.take() {
                    size = s;
                }
                if typeflag == b'S' {
                    self.sparse_ext = h[482] != 0;
                }
            }
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inspect(&buf[..n]).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// A tar numeric field: octal (space or NUL terminated), or base-256 when its high bit is set.
fn numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of PAX extended header records (`<len> <key>=<value>\n` each).
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut found = None;
    let mut rest = records;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, size: u64) -> [u8; BLOCK] {
        let mut h = tar::Header::new_ustar();
        h.set_path("x").unwrap();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_cksum();
        *h.as_bytes()
    }

    fn read_all(stream: &[u8]) -> io::Result<u64> {
        let mut guard = TarGuard::new(stream);
        // Small reads, so headers straddle them.
        let mut buf = [0u8; 100];
        let mut total = 0;
        loop {
            match guard.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    }

    #[test]
    fn huge_extended_headers_are_refused_as_they_arrive() {
        for kind in [b'x', b'g', b'L', b'K'] {
            let stream = header(kind, 2 << 30);
            let err = read_all(&stream).unwrap_err();
            let inner = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<ExtendedHeaderTooLarge>())
                .unwrap();
            assert_eq!(inner.size, 2 << 30);
            assert_eq!(inner.offset, 0);
        }
        // One just within the limit passes, and so does the file after it.
        let mut stream = header(b'x', MAX_EXTENDED_HEADER).to_vec();
        stream.resize(BLOCK + MAX_EXTENDED_HEADER as usize, b'a');
        stream.extend_from_slice(&header(b'0', 3));
        stream.extend_from_slice(&[b'z'; BLOCK]);
        stream.extend_from_slice(&header(b'L', 2 << 30));
        let err = read_all(&stream).unwrap_err().to_string();
        assert!(err.contains("a GNU long name of 2147483648 bytes"), "{err}");
    }

    #[test]
    fn regular_archives_pass_and_pax_sizes_are_followed() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", b"a/very/long/name".as_slice())])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"hello"[..]).unwrap();
        // A PAX size says the next entry's data is 1024 bytes (its header says 0): the
        // guard must skip that data, not read it as headers.
        let records = b"13 size=1024\n";
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(records.len() as u64);
        x.set_cksum();
        b.append(&x, &records[..]).unwrap();
        let mut f = tar::Header::new_ustar();
        f.set_size(0);
        f.set_cksum();
        let mut data = header(b'L', 2 << 30).to_vec(); // data that looks like a header
        data.resize(1024, 0);
        let mut stream = b.into_inner().unwrap();
        stream.extend_from_slice(f.as_bytes());
        stream.extend_from_slice(&data);
        stream.extend_from_slice(&[0; 1024]);
        assert_eq!(read_all(&stream).unwrap(), stream.len() as u64);
        assert_eq!(pax_size(b"13 size=1024\n20 path=aaaaaaaaaaa\n"), Some(1024));
        assert_eq!(numeric(b"0000000017\0\0"), Some(15));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[7] = 1;
        assert_eq!(numeric(&big), Some((1 << 32) + 1));
    }
}

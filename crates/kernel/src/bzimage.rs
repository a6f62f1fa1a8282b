//! Getting the ELF `vmlinux` out of a `bzImage`, which Firecracker needs (it cannot boot a
//! bzImage) and which version detection reads.
//!
//! The x86 boot protocol (2.08+) puts the compressed kernel at `payload_offset` (0x248)
//! bytes after the real-mode setup (`(setup_sects + 1) * 512`, `setup_sects` at 0x1F1), for
//! `payload_length` (0x24C) bytes; the last four are the uncompressed size. The format is
//! told by the payload's magic bytes.

use std::io::Read;

use crate::error::KernelError;

const ELF_MAGIC: &[u8] = b"\x7fELF";
/// A decompressed kernel larger than this is refused (it is not a kernel).
const MAX_VMLINUX: u64 = 1 << 30;

/// How a bzImage payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Lz4,
    Bzip2,
    Lzma,
    Lzo,
}

impl Compression {
    pub fn detect(payload: &[u8]) -> Option<Compression> {
        let starts = |m: &[u8]| payload.starts_with(m);
        if starts(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Compression::Xz)
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if starts(&[0x02, 0x21, 0x4c, 0x18]) {
            Some(Compression::Lz4)
        } else if starts(b"BZh") {
            Some(Compression::Bzip2)
        } else if starts(&[0x5d, 0x00, 0x00]) {
            Some(Compression::Lzma)
        } else if starts(&[0x89, b'L', b'Z', b'O']) {
            Some(Compression::Lzo)
        } else {
            None
        }
    }
}

/// Is this already an ELF image?
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(ELF_MAGIC)
}

/// Is this a bzImage (boot protocol header `HdrS` at 0x202)?
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.len() > 0x250 && &bytes[0x202..0x206] == b"HdrS"
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The compressed payload of a bzImage, with its format.
pub fn payload(bzimage: &[u8]) -> Result<(&[u8], Compression), KernelError> {
    if !is_bzimage(bzimage) {
        return Err(KernelError::NotAKernel(
            "it is neither an ELF vmlinux nor a bzImage".into(),
        ));
    }
    let version = le16(bzimage, 0x206);
    if version < 0x208 {
        return Err(KernelError::NotAKernel(format!(
            "its boot protocol {}.{:02} is older than 2.08 and does not locate its payload",
            version >> 8,
            version & 0xff
        )));
    }
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + le32(bzimage, 0x248) as usize;
    let len = le32(bzimage, 0x24c) as usize;
    let payload = bzimage
        .get(start..start.saturating_add(len))
        .ok_or_else(|| {
            KernelError::NotAKernel(
                "its payload lies beyond the end of the file (truncated?)".into(),
            )
        })?;
    let compression = Compression::detect(payload).ok_or_else(|| {
        KernelError::NotAKernel("its payload is in no compression format a kernel uses".into())
    })?;
    Ok((payload, compression))
}

/// The ELF vmlinux in `image` (returned as is if it already is one).
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, KernelError> {
    if is_elf(image) {
        return Ok(image.to_vec());
    }
    let (payload, compression) = payload(image)?;
    // The last four bytes are the uncompressed size, not compressed data.
    let data = &payload[..payload.len().saturating_sub(4)];
    let reader: Box<dyn Read + '_> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(data)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(data)
                .map_err(|e| KernelError::Decompress(format!("zstd: {e}")))?,
        ),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(data)),
        Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(data)),
        Compression::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX)
                .map_err(|e| KernelError::Decompress(format!("lzma: {e}")))?;
            Box::new(liblzma::read::XzDecoder::new_stream(data, stream))
        }
        Compression::Lzo => {
            return Err(KernelError::Unsupported(
                "this bzImage is LZO-compressed, which cannot be unpacked here; give the uncompressed vmlinux instead".into(),
            ));
        }
    };
    let mut out = Vec::new();
    reader
        .take(MAX_VMLINUX + 1)
        .read_to_end(&mut out)
        .map_err(|e| KernelError::Decompress(format!("{compression:?}: {e}")))?;
    if out.len() as u64 > MAX_VMLINUX {
        return Err(KernelError::NotAKernel(
            "it decompresses to more than 1 GiB".into(),
        ));
    }
    if !is_elf(&out) {
        return Err(KernelError::NotAKernel(format!(
            "its {compression:?} payload does not hold an ELF image"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_magic() {
        assert_eq!(
            Compression::detect(&[0x02, 0x21, 0x4c, 0x18, 0]),
            Some(Compression::Lz4)
        );
        assert_eq!(Compression::detect(b"BZh91AY"), Some(Compression::Bzip2));
        assert_eq!(
            Compression::detect(&[0x89, b'L', b'Z', b'O']),
            Some(Compression::Lzo)
        );
        assert_eq!(Compression::detect(b"nope"), None);
    }

    #[test]
    fn refuses_what_is_not_a_kernel() {
        assert!(
            extract_vmlinux(b"hello")
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
        let mut fake = vec![0u8; 4096];
        fake[0x202..0x206].copy_from_slice(b"HdrS");
        fake[0x206] = 0x0f;
        fake[0x207] = 0x02;
        fake[0x248..0x24c].copy_from_slice(&100_000u32.to_le_bytes());
        fake[0x24c..0x250].copy_from_slice(&100u32.to_le_bytes());
        assert!(
            extract_vmlinux(&fake)
                .unwrap_err()
                .to_string()
                .contains("beyond the end")
        );
    }
}

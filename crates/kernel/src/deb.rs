//! Finding the `data.tar.*` member of a Debian package (an `ar` archive), so a kernel
//! package can be imported without installing it.

use crate::error::KernelError;

const AR_MAGIC: &[u8] = b"!<arch>\n";
const HEADER: usize = 60;

/// Is this an `ar` archive (a `.deb`)?
pub fn is_deb(bytes: &[u8]) -> bool {
    bytes.starts_with(AR_MAGIC)
}

/// The name, offset and length of the package's `data.tar.*` member.
pub fn data_member(deb: &[u8]) -> Result<(String, usize, usize), KernelError> {
    let bad = |reason: &str| KernelError::NotAKernel(format!("not a Debian package: {reason}"));
    if !is_deb(deb) {
        return Err(bad("no ar header"));
    }
    let mut at = AR_MAGIC.len();
    while at + HEADER <= deb.len() {
        let header = &deb[at..at + HEADER];
        if &header[58..60] != b"`\n" {
            return Err(bad("a corrupt member header"));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim()
            .trim_end_matches('/')
            .to_string();
        let size: usize = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| bad("a member size that is not a number"))?;
        let data = at + HEADER;
        if data + size > deb.len() {
            return Err(bad("it is truncated"));
        }
        if name.starts_with("data.tar") {
            return Ok((name, data, size));
        }
        at = data + size + (size % 2);
    }
    Err(bad("it has no data.tar member"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            644,
            data.len()
        )
        .into_bytes();
        h.extend_from_slice(data);
        if data.len() % 2 == 1 {
            h.push(b'\n');
        }
        h
    }

    #[test]
    fn finds_the_data_member() {
        let mut deb = AR_MAGIC.to_vec();
        deb.extend(member("debian-binary", b"2.0\n"));
        deb.extend(member("control.tar.xz", b"abc"));
        deb.extend(member("data.tar.xz", b"payload"));
        let (name, at, len) = data_member(&deb).unwrap();
        assert_eq!(
            (name.as_str(), &deb[at..at + len]),
            ("data.tar.xz", &b"payload"[..])
        );
        assert!(data_member(b"not an archive").is_err());
        assert!(data_member(&deb[..deb.len() - 3]).is_err());
    }
}

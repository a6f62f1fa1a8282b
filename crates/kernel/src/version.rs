//! The kernel's release (`uname -r`), read from the `Linux version <release> ...` banner
//! in the uncompressed image.

const BANNER: &[u8] = b"Linux version ";

pub fn kernel_release(vmlinux: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(at) = find(&vmlinux[from..], BANNER) {
        let start = from + at + BANNER.len();
        let end = vmlinux[start..]
            .iter()
            .position(|b| *b == b' ' || *b == 0 || *b == b'\n')
            .map_or(vmlinux.len(), |p| start + p);
        let candidate = &vmlinux[start..end];
        // The banner string itself, not a format string such as "Linux version %s".
        if !candidate.is_empty()
            && candidate[0].is_ascii_digit()
            && candidate.iter().all(|b| b.is_ascii_graphic())
            && candidate.len() < 128
        {
            return Some(String::from_utf8_lossy(candidate).into_owned());
        }
        from = start;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_banner() {
        let image = b"\0junk Linux version %s (%s)\0Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        assert_eq!(
            kernel_release(image).as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(kernel_release(b"no banner here"), None);
    }
}

//! The kernel's release (`uname -r`), read from the `Linux version <release> ...` banner
//! in the uncompressed image.

use crate::error::KernelError;

const BANNER: &[u8] = b"Linux version ";
/// The longest release accepted (real ones are well under 64 bytes).
const MAX_RELEASE: usize = 127;

/// Checks that a release is safe as one path component on the host: only
/// `[A-Za-z0-9._+~-]`, not `.` or `..`, not empty, at most 127 bytes.
pub fn check_release(release: &str) -> Result<(), KernelError> {
    let bad = |reason| {
        Err(KernelError::BadRelease {
            release: release.to_string(),
            reason,
        })
    };
    if release.is_empty() {
        return bad("is empty");
    }
    if release == "." || release == ".." {
        return bad("is a relative directory name");
    }
    if release.len() > MAX_RELEASE {
        return bad("is longer than 127 bytes");
    }
    if !release
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
    {
        return bad("holds a character other than letters, digits and . _ + ~ -");
    }
    Ok(())
}

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

    #[test]
    fn only_plain_releases_pass() {
        for good in ["6.1.0-56-cloud-amd64", "5.10.0+", "6.8.0~rc1", "4.19.0_x.y"] {
            check_release(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "1/../../../../tmp/x",
            "1/..",
            "6.1/x",
            "6.1\\x",
            "6.1:x",
            "6.1$(id)",
            "6.1\u{e9}",
        ] {
            let err = check_release(bad).unwrap_err().to_string();
            assert!(err.contains("refusing this kernel image"), "{bad:?}: {err}");
        }
        check_release(&"1".repeat(127)).unwrap();
        assert!(check_release(&"1".repeat(128)).is_err());
        // The banner parser still reports a hostile release, for the caller to refuse.
        let image = b"Linux version 1/../../tmp/x (x@y) #1\0";
        let release = kernel_release(image).unwrap();
        assert!(check_release(&release).is_err());
    }
}

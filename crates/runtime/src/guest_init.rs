//! The guest init (`ignite-init`) the host puts into every kernel's initramfs. It runs as
//! the guest's PID 1 before any root filesystem exists, so it must be a static x86-64 ELF
//! executable: a dynamically linked one (what a plain `cargo build --workspace` leaves
//! beside the `ignite` binary) boots to "Failed to execute /init" and a kernel panic.

use std::path::{Path, PathBuf};

/// Overrides where the guest init is found.
pub const INIT_ENV: &str = "IGNITE_INIT";

/// How to get a good one, for error messages.
const HOW_TO_BUILD: &str = "build it static (RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p ignite-guest --target x86_64-unknown-linux-gnu) or install it with scripts/setup.sh";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestInitError {
    #[error(
        "the guest init {} is dynamically linked (it asks for {interpreter}), so it cannot run as the guest's PID 1: {HOW_TO_BUILD}",
        path.display()
    )]
    Dynamic { path: PathBuf, interpreter: String },
    #[error("the guest init {} is not an x86-64 ELF executable ({why}): {HOW_TO_BUILD}", path.display())]
    NotElf { path: PathBuf, why: &'static str },
}

/// Where the guest init is: `$IGNITE_INIT` as given, else the first static one of: beside
/// the running binary (`../lib/ignite/ignite-init`, then `ignite-init`), then where
/// scripts/setup.sh installs it. A dynamically linked candidate is passed over with a
/// warning, so a development build beside the binary never shadows the installed init.
pub fn find_guest_init() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(INIT_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        candidates.push(bin.join("../lib/ignite/ignite-init"));
        candidates.push(bin.join("ignite-init"));
    }
    candidates.push("/usr/local/lib/ignite/ignite-init".into());
    candidates.push("/usr/lib/ignite/ignite-init".into());
    candidates.into_iter().filter(|p| p.is_file()).find(|p| {
        let head = read_head(p);
        match check_static(p, &head) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("passing over {}: {e}", p.display());
                false
            }
        }
    })
}

fn read_head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(HEAD_LIMIT).read_to_end(&mut head);
    }
    head
}

/// Program headers are near the start of any executable we build.
const HEAD_LIMIT: u64 = 64 << 10;

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;

/// Checks that `image` (the file's first bytes, or all of it) is a static x86-64 ELF
/// executable: no program interpreter.
pub fn check_static(path: &Path, image: &[u8]) -> Result<(), GuestInitError> {
    let not_elf = |why| GuestInitError::NotElf {
        path: path.to_path_buf(),
        why,
    };
    let u16_at = |at: usize| {
        image
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |at: usize| {
        image
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(not_elf("no ELF header"));
    }
    if image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return Err(not_elf("not 64-bit little-endian"));
    }
    if u16_at(0x12) != Some(EM_X86_64) {
        return Err(not_elf("not built for x86-64"));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Err(not_elf("truncated ELF header"));
    };
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i.saturating_mul(usize::from(phentsize)));
        let kind = u32_at(at).ok_or_else(|| not_elf("truncated program headers"))?;
        if kind == PT_INTERP {
            let offset = u64_at(at + 8).unwrap_or(0) as usize;
            let size = u64_at(at + 32).unwrap_or(0) as usize;
            let interpreter = image
                .get(offset..offset.saturating_add(size))
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_else(|| "a program interpreter".into());
            return Err(GuestInitError::Dynamic {
                path: path.to_path_buf(),
                interpreter,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_are_refused_with_their_interpreter() {
        // Any program of the host's is dynamically linked.
        let path = Path::new("/bin/ls");
        let err = check_static(path, &std::fs::read(path).unwrap()).unwrap_err();
        assert!(matches!(err, GuestInitError::Dynamic { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("ld-linux"), "{text}");
        assert!(text.contains("crt-static"), "{text}");
    }

    #[test]
    fn static_executables_pass() {
        // busybox-static, installed for the tests' images.
        let path = Path::new("/bin/busybox");
        check_static(path, &std::fs::read(path).unwrap()).unwrap();
    }

    #[test]
    fn non_elf_and_truncated_files_are_refused() {
        let p = Path::new("x");
        assert!(matches!(
            check_static(p, b"#!/bin/sh\n"),
            Err(GuestInitError::NotElf { .. })
        ));
        let mut head = std::fs::read("/bin/busybox").unwrap();
        head.truncate(0x30);
        assert!(matches!(
            check_static(p, &head),
            Err(GuestInitError::NotElf { .. })
        ));
    }
}

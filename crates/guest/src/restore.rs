//! A guest restored from a snapshot renews what must not be shared with the VM it was
//! taken of, or with the other clones of the same snapshot: the wall clock (it stood
//! still in the snapshot), the kernel's random state (every clone resumes with the same
//! one), the hostname and each interface's MAC and addresses.

use ignite_guest_protocol::agent::{RESTORE_ENTROPY_BYTES, RestoreRequest};

/// Applies a restore request; the first failure is the error, named.
pub fn renew(request: &RestoreRequest) -> Result<(), String> {
    set_clock(request.unix_nanos)?;
    reseed(&decode_hex(&request.entropy)?)?;
    if let Some(name) = &request.hostname {
        rustix::system::sethostname(name.as_bytes())
            .map_err(|e| format!("cannot set the hostname {name:?}: {e}"))?;
    }
    if request.stop_free_page_reporting {
        stop_free_page_reporting()?;
    }
    crate::network::readdress(&request.interfaces)
}

/// Where the balloon driver's devices are listed (and unbound).
const BALLOON_DRIVER: &str = "/sys/bus/virtio/drivers/virtio_balloon";

/// Unbinds the balloon driver from its device: no more freed pages are reported (nor
/// memory statistics); the device stays, so the machine still matches its saved state.
fn stop_free_page_reporting() -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(BALLOON_DRIVER) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("virtio") {
            std::fs::write(format!("{BALLOON_DRIVER}/unbind"), name.as_encoded_bytes())
                .map_err(|e| format!("cannot stop the balloon's free page reporting: {e}"))?;
        }
    }
    Ok(())
}

fn set_clock(unix_nanos: u128) -> Result<(), String> {
    let time = rustix::time::Timespec {
        tv_sec: (unix_nanos / 1_000_000_000) as i64,
        tv_nsec: (unix_nanos % 1_000_000_000) as _,
    };
    rustix::time::clock_settime(rustix::time::ClockId::Realtime, time)
        .map_err(|e| format!("cannot set the clock: {e}"))
}

/// Mixes the host's bytes into the input pool, then makes the kernel reseed its
/// generator from the pool at once (`RNDRESEEDCRNG`): without the reseed, clones would
/// go on drawing from the identical generator state they were restored with until the
/// kernel's next scheduled reseed.
fn reseed(entropy: &[u8]) -> Result<(), String> {
    if entropy.len() < RESTORE_ENTROPY_BYTES {
        return Err(format!(
            "the host sent {} random bytes, fewer than {RESTORE_ENTROPY_BYTES}",
            entropy.len()
        ));
    }
    let random = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| format!("cannot open /dev/urandom: {e}"))?;
    std::io::Write::write_all(&mut &random, entropy)
        .map_err(|e| format!("cannot write to /dev/urandom: {e}"))?;
    reseed_crng(&random).map_err(|e| format!("cannot reseed the kernel's generator: {e}"))
}

/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
#[allow(unsafe_code)]
fn reseed_crng(random: &std::fs::File) -> rustix::io::Result<()> {
    use rustix::ioctl::{NoArg, ioctl, opcode};
    const RNDRESEEDCRNG: rustix::ioctl::Opcode = opcode::none(b'R', 0x07);
    // SAFETY: RNDRESEEDCRNG takes no argument, which is what NoArg passes; the fd is the
    // random device the ioctl is defined on.
    unsafe { ioctl(random, NoArg::<RNDRESEEDCRNG>::new()) }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * 4096 {
        return Err("the host's random bytes are not even-length hex".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| "the host's random bytes are not hex".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_and_anything_else_is_refused() {
        assert_eq!(decode_hex("00ff10").unwrap(), [0, 255, 16]);
        assert!(decode_hex("0").is_err());
        assert!(decode_hex("zz").is_err());
        assert!(decode_hex(&"a".repeat(10_000)).is_err());
    }

    #[test]
    fn too_few_random_bytes_are_refused_before_anything_is_written() {
        assert!(reseed(&[1, 2, 3]).unwrap_err().contains("fewer than 64"));
    }
}

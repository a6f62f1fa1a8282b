//! Growing the root filesystem online to the size of its disk. The host makes the VM's disk
//! `--size` large (a qcow2 overlay or a sparse copy of the image's small ext4); here the
//! mounted ext4 is resized to fill it, on every boot, which is a no-op once it does.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Below this, growing is not worth a resize (the filesystem's end is rounded down to
/// whole block groups' worth of slack anyway).
const MIN_GROWTH: u64 = 1 << 20;

/// ext4 superblock fields (offsets from the superblock's start, at byte 1024).
const SB_OFFSET: u64 = 1024;
const S_BLOCKS_COUNT_LO: usize = 0x04;
const S_LOG_BLOCK_SIZE: usize = 0x18;
const S_MAGIC: usize = 0x38;
const S_FEATURE_INCOMPAT: usize = 0x60;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const EXT4_MAGIC: u16 = 0xEF53;
const INCOMPAT_64BIT: u32 = 0x80;

pub struct Growth {
    pub from: u64,
    pub to: u64,
}

/// Grows the ext4 mounted at `mountpoint` from `device` to the device's size. `None` when
/// it already fills the device.
pub fn grow(mountpoint: &str, device: &str) -> Result<Option<Growth>, String> {
    let name = device.rsplit('/').next().unwrap_or(device);
    let sectors: u64 = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
        .map_err(|e| format!("cannot read the size of {device}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("bad size of {device}: {e}"))?;
    let device_bytes = sectors * 512;

    let mut sb = [0u8; 1024];
    let mut dev = File::open(device).map_err(|e| format!("cannot open {device}: {e}"))?;
    dev.seek(SeekFrom::Start(SB_OFFSET))
        .and_then(|_| dev.read_exact(&mut sb))
        .map_err(|e| format!("cannot read the superblock of {device}: {e}"))?;
    let u32_at = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().expect("4 bytes"));
    if u16::from_le_bytes([sb[S_MAGIC], sb[S_MAGIC + 1]]) != EXT4_MAGIC {
        return Err(format!("{device} does not hold an ext4 filesystem"));
    }
    let block_size = 1024u64 << u32_at(S_LOG_BLOCK_SIZE);
    let is_64bit = u32_at(S_FEATURE_INCOMPAT) & INCOMPAT_64BIT != 0;
    let mut blocks = u64::from(u32_at(S_BLOCKS_COUNT_LO));
    if is_64bit {
        blocks |= u64::from(u32_at(S_BLOCKS_COUNT_HI)) << 32;
    }
    let mut target = device_bytes / block_size;
    if !is_64bit {
        target = target.min(u64::from(u32::MAX));
    }
    if target <= blocks || (target - blocks) * block_size < MIN_GROWTH {
        return Ok(None);
    }
    let dir = File::open(mountpoint).map_err(|e| format!("cannot open {mountpoint}: {e}"))?;
    resize(&dir, target).map_err(|e| {
        format!(
            "the kernel refused to grow the root filesystem from {} to {} MiB: {e}",
            (blocks * block_size) >> 20,
            (target * block_size) >> 20
        )
    })?;
    Ok(Some(Growth {
        from: blocks * block_size,
        to: target * block_size,
    }))
}

/// `EXT4_IOC_RESIZE_FS`: `_IOW('f', 16, __u64)`, the new size in filesystem blocks.
#[allow(unsafe_code)]
fn resize(dir: &File, blocks: u64) -> rustix::io::Result<()> {
    use rustix::ioctl::{Setter, ioctl, opcode};
    const EXT4_IOC_RESIZE_FS: rustix::ioctl::Opcode = opcode::write::<u64>(b'f', 16);
    // SAFETY: EXT4_IOC_RESIZE_FS takes a pointer to a u64, which is exactly what this
    // Setter passes; the fd is a directory on the ext4 filesystem, as the ioctl requires.
    unsafe { ioctl(dir, Setter::<EXT4_IOC_RESIZE_FS, u64>::new(blocks)) }
}

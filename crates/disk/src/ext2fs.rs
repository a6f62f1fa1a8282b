//! The few calls of e2fsprogs' libext2fs that write an ext4 filesystem without mounting
//! it, declared by hand (Debian's `libext2fs-dev` 1.47; no bindgen). Only `struct
//! ext2_inode` is laid out here: every other type is an opaque pointer, so nothing else
//! about the library's structures can go out of step. Everything `unsafe` stays in this
//! module; [`crate::writer`] is the safe API over it.

use std::ffi::{CStr, c_char, c_int, c_long, c_uint, c_void};

pub type Errcode = c_long;
pub type Ino = u32;
pub type Filsys = *mut c_void;
pub type File = *mut c_void;
pub type XattrHandle = *mut c_void;
pub type ExtentHandle = *mut c_void;

pub const ROOT_INO: Ino = 2;
pub const FLAG_RW: c_int = 0x01;
pub const FLAG_64BITS: c_int = 0x20000;
pub const FILE_WRITE: c_int = 0x0001;

pub const FT_REG_FILE: c_int = 1;
pub const FT_DIR: c_int = 2;
pub const FT_CHRDEV: c_int = 3;
pub const FT_BLKDEV: c_int = 4;
pub const FT_FIFO: c_int = 5;
pub const FT_SYMLINK: c_int = 7;

pub const S_IFIFO: u16 = 0o010000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFLNK: u16 = 0o120000;

// From <ext2fs/ext2_err.h>.
pub const ET_DIR_NO_SPACE: Errcode = 2133571366;

/// `struct ext2_inode` of <ext2fs/ext2_fs.h>: the first 128 bytes of every on-disk inode
/// (the Linux variants of its unions).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Inode {
    pub i_mode: u16,
    pub i_uid: u16,
    pub i_size: u32,
    pub i_atime: u32,
    pub i_ctime: u32,
    pub i_mtime: u32,
    pub i_dtime: u32,
    pub i_gid: u16,
    pub i_links_count: u16,
    pub i_blocks: u32,
    pub i_flags: u32,
    pub l_i_version: u32,
    pub i_block: [u32; 15],
    pub i_generation: u32,
    pub i_file_acl: u32,
    pub i_size_high: u32,
    pub i_faddr: u32,
    pub l_i_blocks_hi: u16,
    pub l_i_file_acl_high: u16,
    pub l_i_uid_high: u16,
    pub l_i_gid_high: u16,
    pub l_i_checksum_lo: u16,
    pub l_i_reserved: u16,
}

#[link(name = "ext2fs")]
#[link(name = "com_err")]
unsafe extern "C" {
    static unix_io_manager: *mut c_void;
    fn initialize_ext2_error_table();
    fn error_message(code: c_long) -> *const c_char;

    pub fn ext2fs_open(
        name: *const c_char,
        flags: c_int,
        superblock: c_int,
        block_size: c_uint,
        manager: *mut c_void,
        ret_fs: *mut Filsys,
    ) -> Errcode;
    pub fn ext2fs_read_bitmaps(fs: Filsys) -> Errcode;
    pub fn ext2fs_close2(fs: Filsys, flags: c_int) -> Errcode;
    pub fn ext2fs_free(fs: Filsys);

    pub fn ext2fs_new_inode(
        fs: Filsys,
        dir: Ino,
        mode: c_int,
        map: *mut c_void,
        ret: *mut Ino,
    ) -> Errcode;
    pub fn ext2fs_inode_alloc_stats2(fs: Filsys, ino: Ino, inuse: c_int, isdir: c_int);
    pub fn ext2fs_write_new_inode(fs: Filsys, ino: Ino, inode: *mut Inode) -> Errcode;
    pub fn ext2fs_read_inode(fs: Filsys, ino: Ino, inode: *mut Inode) -> Errcode;
    pub fn ext2fs_write_inode(fs: Filsys, ino: Ino, inode: *mut Inode) -> Errcode;
    pub fn ext2fs_extent_open2(
        fs: Filsys,
        ino: Ino,
        inode: *mut Inode,
        handle: *mut ExtentHandle,
    ) -> Errcode;
    pub fn ext2fs_extent_free(handle: ExtentHandle);
    pub fn ext2fs_punch(
        fs: Filsys,
        ino: Ino,
        inode: *mut Inode,
        block_buf: *mut c_char,
        start: u64,
        end: u64,
    ) -> Errcode;

    pub fn ext2fs_link(
        fs: Filsys,
        dir: Ino,
        name: *const c_char,
        ino: Ino,
        flags: c_int,
    ) -> Errcode;
    pub fn ext2fs_expand_dir(fs: Filsys, dir: Ino) -> Errcode;
    pub fn ext2fs_mkdir(fs: Filsys, parent: Ino, inum: Ino, name: *const c_char) -> Errcode;
    pub fn ext2fs_symlink(
        fs: Filsys,
        parent: Ino,
        ino: Ino,
        name: *const c_char,
        target: *const c_char,
    ) -> Errcode;

    pub fn ext2fs_file_open(fs: Filsys, ino: Ino, flags: c_int, ret: *mut File) -> Errcode;
    pub fn ext2fs_file_write(
        file: File,
        buf: *const c_void,
        nbytes: c_uint,
        written: *mut c_uint,
    ) -> Errcode;
    pub fn ext2fs_file_llseek(file: File, offset: u64, whence: c_int, ret: *mut u64) -> Errcode;
    pub fn ext2fs_file_set_size2(file: File, size: u64) -> Errcode;
    pub fn ext2fs_file_close(file: File) -> Errcode;

    pub fn ext2fs_xattrs_open(fs: Filsys, ino: Ino, handle: *mut XattrHandle) -> Errcode;
    pub fn ext2fs_xattrs_read(handle: XattrHandle) -> Errcode;
    pub fn ext2fs_xattr_set(
        handle: XattrHandle,
        key: *const c_char,
        value: *const c_void,
        value_len: usize,
    ) -> Errcode;
    pub fn ext2fs_xattrs_close(handle: *mut XattrHandle) -> Errcode;
}

/// The head of `struct struct_ext2_filsys` (<ext2fs/ext2fs.h>), up to its superblock.
#[repr(C)]
struct FilsysHead {
    magic: Errcode,
    io: *mut c_void,
    flags: c_int,
    device_name: *mut c_char,
    superblock: *const u8,
}

/// Free blocks and free inodes, as the open filesystem's in-memory superblock counts
/// them (the allocator keeps them current).
pub fn free_counts(fs: Filsys) -> (u64, u64) {
    let read = |at: usize| -> u32 {
        // SAFETY: `fs` is an open ext2_filsys, whose `super` points at a whole
        // `struct ext2_super_block` (1024 bytes); the offsets are that struct's
        // s_free_blocks_count (0x0c), s_free_inodes_count (0x10), s_free_blocks_hi (0x158).
        unsafe {
            let head = &*(fs as *const FilsysHead);
            std::ptr::read_unaligned(head.superblock.add(at) as *const u32)
        }
    };
    let blocks = u64::from(read(0x0c)) | (u64::from(read(0x158)) << 32);
    (blocks, u64::from(read(0x10)))
}

/// The io manager for files and block devices.
pub fn unix_io() -> *mut c_void {
    // SAFETY: a static the library initialises; read, never written.
    unsafe { unix_io_manager }
}

/// The library's message for an error code (its own, or an errno).
pub fn message(code: Errcode) -> String {
    static TABLE: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers the library's static message table once.
    TABLE.call_once(|| unsafe { initialize_ext2_error_table() });
    // SAFETY: error_message returns a NUL-terminated static (or thread-local) string.
    let text = unsafe { error_message(code) };
    if text.is_null() {
        return format!("error {code}");
    }
    // SAFETY: non-null and NUL-terminated, see above.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inode_has_the_headers_layout() {
        // <ext2fs/ext2_fs.h>: struct ext2_inode is 128 bytes, i_block at 0x28, i_generation
        // at 0x64, the Linux osd2 at 0x74.
        assert_eq!(std::mem::size_of::<Inode>(), 128);
        assert_eq!(std::mem::offset_of!(Inode, i_block), 0x28);
        assert_eq!(std::mem::offset_of!(Inode, i_generation), 0x64);
        assert_eq!(std::mem::offset_of!(Inode, l_i_blocks_hi), 0x74);
        assert_eq!(std::mem::offset_of!(Inode, l_i_uid_high), 0x78);
        assert_eq!(std::mem::offset_of!(Inode, l_i_reserved), 0x7e);
        assert_eq!(message(ET_DIR_NO_SPACE), "No free space in the directory");
    }
}

//! The ext4 writer against the real e2fsprogs: what it writes checks clean with
//! `e2fsck -fn` and reads back with debugfs, and a short estimate grows the filesystem.

use std::io::Read;
use std::process::Command;

use ignite_disk::{Attrs, Ext4Writer, FileKind, ROOT_INO, Special, check_ext4};

fn debugfs(image: &std::path::Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn attrs(uid: u32, gid: u32, perm: u32) -> Attrs {
    Attrs {
        uid,
        gid,
        perm,
        mtime: 1_700_000_000,
    }
}

#[test]
fn writes_every_kind_of_inode_and_grows_when_short() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("root.ext4");
    // Far too small for the 40 MiB file below: the writer must grow the filesystem.
    let mut w = Ext4Writer::create(&image, 8 << 20, 128, "root").unwrap();
    let start = w.size();

    let etc = w.mkdir(ROOT_INO, b"etc").unwrap();
    w.set_attrs(etc, attrs(0, 0, 0o755), None).unwrap();
    let (shadow, written) = w.new_file(&mut &b"root:*:1::::::\n"[..], 15).unwrap();
    assert_eq!(written, 4096);
    w.link(etc, b"shadow", shadow, FileKind::Regular).unwrap();
    w.set_attrs(shadow, attrs(0, 42, 0o640), Some(1)).unwrap();

    // A big file with a hole in the middle; and a hardlink pair.
    let mut data = vec![1u8; 20 << 20];
    data.extend(vec![0u8; 8 << 20]);
    data.extend(vec![2u8; 20 << 20]);
    let (big, written) = w.new_file(&mut &data[..], data.len() as u64).unwrap();
    assert_eq!(written, 40 << 20, "the zeros stay a hole");
    w.link(ROOT_INO, b"big", big, FileKind::Regular).unwrap();
    w.link(etc, b"big-link", big, FileKind::Regular).unwrap();
    w.set_attrs(big, attrs(1000, 1000, 0o4755), Some(2))
        .unwrap();
    w.set_xattrs(
        big,
        &[
            (b"user.origin".to_vec(), b"layer-1".to_vec()),
            (
                b"security.capability".to_vec(),
                vec![
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
        ],
    )
    .unwrap();

    // A replaced file is freed.
    let (gone, _) = w.new_file(&mut &[9u8; 100_000][..], 100_000).unwrap();
    w.discard(gone).unwrap();

    let link = w.symlink(ROOT_INO, b"bin", b"usr/bin").unwrap();
    w.set_attrs(link, attrs(0, 0, 0o777), None).unwrap();
    let long_target = "x/".repeat(100);
    w.symlink(ROOT_INO, b"long", long_target.as_bytes())
        .unwrap();
    let dev = w.mkdir(ROOT_INO, b"dev").unwrap();
    let null = w.special(Special::Char { major: 1, minor: 3 }).unwrap();
    w.link(dev, b"null", null, FileKind::Char).unwrap();
    w.set_attrs(null, attrs(0, 0, 0o666), Some(1)).unwrap();
    let wide = w
        .special(Special::Block {
            major: 259,
            minor: 70000,
        })
        .unwrap();
    w.link(dev, b"wide", wide, FileKind::Block).unwrap();
    w.set_attrs(wide, attrs(0, 6, 0o660), Some(1)).unwrap();
    // Enough names to need more directory blocks than the first.
    let many = w.mkdir(ROOT_INO, b"many").unwrap();
    for i in 0..600 {
        let fifo = w.special(Special::Fifo).unwrap();
        w.link(
            many,
            format!("a-rather-long-name-for-fifo-number-{i:04}").as_bytes(),
            fifo,
            FileKind::Fifo,
        )
        .unwrap();
        w.set_attrs(fifo, attrs(0, 0, 0o600), Some(1)).unwrap();
    }
    let bad = w.link(ROOT_INO, &[b'a'; 256], big, FileKind::Regular);
    assert!(bad.unwrap_err().to_string().contains("1 to 255 bytes"));
    let size = w.close().unwrap();
    assert!(size > start, "grown from {start} to {size}");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), size);

    check_ext4(&image).unwrap();
    assert_eq!(debugfs(&image, "cat /etc/shadow"), "root:*:1::::::\n");
    let shadow = debugfs(&image, "stat /etc/shadow");
    assert!(shadow.contains("Mode:  0640"), "{shadow}");
    assert!(shadow.contains("User:     0   Group:    42"), "{shadow}");
    let big = debugfs(&image, "stat /etc/big-link");
    assert!(big.contains("Mode:  04755"), "{big}");
    assert!(big.contains("User:  1000   Group:  1000"), "{big}");
    assert!(big.contains("Links: 2"), "{big}");
    assert!(big.contains("Size: 50331648"), "{big}");
    let dumped = dir.path().join("big.out");
    debugfs(&image, &format!("dump /big {}", dumped.display()));
    assert!(std::fs::read(&dumped).unwrap() == data);
    let xattrs = debugfs(&image, "ea_list /big");
    assert!(
        xattrs.contains("user.origin") && xattrs.contains("layer-1"),
        "{xattrs}"
    );
    assert!(xattrs.contains("security.capability"), "{xattrs}");
    let null = debugfs(&image, "stat /dev/null");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    let wide = debugfs(&image, "stat /dev/wide");
    assert!(
        wide.contains("Device major/minor number: 259:70000"),
        "{wide}"
    );
    assert!(debugfs(&image, "stat /bin").contains("Fast link dest: \"usr/bin\""));
    let long = debugfs(&image, "stat /long");
    assert!(long.contains("Type: symlink"), "{long}");
    assert!(
        debugfs(&image, "ls -l /many")
            .matches("fifo-number")
            .count()
            == 600
    );
}

#[test]
fn an_oversized_estimate_is_shrunk_to_fit() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("root.ext4");
    let mut w = Ext4Writer::create(&image, 256 << 20, 4096, "root").unwrap();
    let data = vec![5u8; 3 << 20];
    let (ino, _) = w.new_file(&mut &data[..], data.len() as u64).unwrap();
    w.link(ROOT_INO, b"data", ino, FileKind::Regular).unwrap();
    w.set_attrs(ino, attrs(0, 0, 0o644), Some(1)).unwrap();
    assert_eq!(w.close_fitting(48 << 20).unwrap(), 48 << 20);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 48 << 20);
    check_ext4(&image).unwrap();
    let dumped = dir.path().join("data.out");
    debugfs(&image, &format!("dump /data {}", dumped.display()));
    assert!(std::fs::read(&dumped).unwrap() == data);
    // Close enough to the estimate: left as it is.
    let mut w = Ext4Writer::create(&image, 64 << 20, 4096, "root").unwrap();
    let (ino, _) = w.new_file(&mut &data[..], data.len() as u64).unwrap();
    w.link(ROOT_INO, b"data", ino, FileKind::Regular).unwrap();
    assert_eq!(w.close_fitting(62 << 20).unwrap(), 64 << 20);
    check_ext4(&image).unwrap();
}

/// A filesystem grown a long way for a large sparse file (1 GiB of zeros, stored as holes)
/// with directories then made in its new block groups: shrinking it to what its data needs
/// alone would be below resize2fs's minimum, which leaves it broken half-way (the 1 GiB
/// image of the lifecycle benchmark). It is shrunk no further than that minimum allows.
#[test]
fn a_disk_grown_for_a_sparse_file_shrinks_no_further_than_resize2fs_can() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("root.ext4");
    let mut w = Ext4Writer::create(&image, 24 << 20, 4096, "root").unwrap();
    let size = 1u64 << 30;
    let (ino, written) = w
        .new_file(&mut std::io::repeat(0).take(size), size)
        .unwrap();
    assert_eq!(written, 0, "zeros are holes");
    assert!(w.size() > size, "grown for the file's size: {}", w.size());
    w.link(ROOT_INO, b"zeros", ino, FileKind::Regular).unwrap();
    w.set_attrs(ino, attrs(0, 0, 0o644), Some(1)).unwrap();
    // Directories made after the growth spread over its new block groups (as an image's
    // directories are written after its files), which a shrink must then keep.
    for i in 0..32 {
        let d = w.mkdir(ROOT_INO, format!("d{i}").as_bytes()).unwrap();
        w.set_attrs(d, attrs(0, 0, 0o755), None).unwrap();
    }
    let bytes = w.close_fitting(8 << 20).unwrap();
    assert!(bytes < 256 << 20, "not shrunk: {bytes}");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), bytes);
    check_ext4(&image).unwrap();
    assert!(debugfs(&image, "stat /zeros").contains("Size: 1073741824"));
}

#[test]
fn free_counts_are_read_from_the_superblock_where_dumpe2fs_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("root.ext4");
    let w = Ext4Writer::create(&image, 96 << 20, 5000, "root").unwrap();
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&image)
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| -> u64 {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        w.free(),
        (value("Free blocks:"), value("Free inodes:")),
        "{header}"
    );
    w.close().unwrap();
}

//! Importing images end to end: real layers with whiteouts, links and device nodes, from an
//! OCI layout, a docker-archive file and a real registry (with and without auth); the
//! resulting ext4 read back file by file; every kind of hostile input refused.

use std::fs;
use std::path::Path;
use std::time::Instant;

use ignite_oci::fetch::NoProgress;
use ignite_runtime::images::{ImportOptions, import_image, rootfs_path};
use ignite_runtime::removal::remove_image;
use ignite_store::Store;
use ignite_testkit::ext4;
use ignite_testkit::images::{Compression, Image, Layer, LayerBuilder};
use ignite_testkit::registry::Registry;

/// Three layers: a gzip base, a zstd layer that deletes and hides things, a plain one.
fn layered_image() -> Image {
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/hostname", b"base\n", 0o644)
        .file("etc/motd", b"to be deleted\n", 0o644)
        .dir("opt", 0o755)
        .dir("opt/app", 0o755)
        .file("opt/app/old.txt", b"hidden by the opaque marker\n", 0o644)
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
        .symlink("bin", "usr/bin")
        .dir("var", 0o755)
        .symlink("var/run", "/run")
        .dir("run", 0o755)
        .dir("dev", 0o755)
        .char_device("dev/null", 1, 3)
        .owned_file("srv-data", b"owned by 1000\n", 1000, 1000)
        .finish(Compression::Gzip);
    let changes = LayerBuilder::new()
        .whiteout("etc", "motd")
        .opaque("opt/app")
        .file("opt/app/new.txt", b"added with the opaque marker\n", 0o600)
        .hardlink("usr/bin/tool-link", "usr/bin/tool")
        .file(
            "bin/via-symlink",
            b"written through the bin -> usr/bin symlink\n",
            0o644,
        )
        .file("var/run/pid", b"42\n", 0o644)
        .finish(Compression::Zstd);
    let top = LayerBuilder::new()
        .file("etc/hostname", b"top\n", 0o644)
        .dir("srv", 0o755)
        .file_with_xattr("srv/labelled", b"x", "user.origin", b"layer-3")
        .finish(Compression::None);
    Image::new(vec![base, changes, top], &["echo hi"])
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    (dir, store)
}

fn import(
    store: &Store,
    source: &str,
) -> Result<ignite_runtime::images::Imported, ignite_runtime::images::ImageError> {
    import_image(store, source, &ImportOptions::default(), &NoProgress)
}

fn check_layered_rootfs(disk: &Path) {
    assert!(ext4::fsck_clean(disk), "e2fsck -fn must pass");
    let expected = [
        "/bin",
        "/dev",
        "/dev/null",
        "/etc",
        "/etc/hostname",
        "/opt",
        "/opt/app",
        "/opt/app/new.txt",
        "/run",
        "/run/pid",
        "/srv",
        "/srv-data",
        "/srv/labelled",
        "/usr",
        "/usr/bin",
        "/usr/bin/tool",
        "/usr/bin/tool-link",
        "/usr/bin/via-symlink",
        "/var",
        "/var/run",
    ];
    assert_eq!(ext4::all_paths(disk), expected);
    assert_eq!(ext4::read_file(disk, "/etc/hostname").unwrap(), b"top\n");
    assert!(
        ext4::stat(disk, "/etc/motd").is_none(),
        "the whiteout deleted it"
    );
    assert!(
        ext4::stat(disk, "/opt/app/old.txt").is_none(),
        "the opaque marker hid it"
    );
    assert!(
        ext4::stat(disk, "/etc/.wh.motd").is_none()
            && ext4::stat(disk, "/opt/app/.wh..wh..opq").is_none()
    );
    assert_eq!(
        ext4::read_file(disk, "/opt/app/new.txt").unwrap(),
        b"added with the opaque marker\n"
    );
    assert_eq!(ext4::symlink_target(disk, "/bin").unwrap(), "usr/bin");
    assert_eq!(ext4::symlink_target(disk, "/var/run").unwrap(), "/run");
    // Written through symlinks, the files landed inside the image.
    assert_eq!(
        ext4::read_file(disk, "/usr/bin/via-symlink").unwrap(),
        b"written through the bin -> usr/bin symlink\n"
    );
    assert_eq!(ext4::read_file(disk, "/run/pid").unwrap(), b"42\n");
    // The hardlink shares the inode.
    let tool = ext4::stat(disk, "/usr/bin/tool").unwrap();
    let link = ext4::stat(disk, "/usr/bin/tool-link").unwrap();
    assert_eq!(ext4::field(&tool, "Links:").as_deref(), Some("2"));
    assert_eq!(ext4::field(&tool, "Inode:"), ext4::field(&link, "Inode:"));
    assert_eq!(ext4::field(&tool, "Mode:").as_deref(), Some("0755"));
    assert_eq!(
        ext4::field(&ext4::stat(disk, "/opt/app/new.txt").unwrap(), "Mode:").as_deref(),
        Some("0600")
    );
    let null = ext4::stat(disk, "/dev/null").unwrap();
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    let xattrs = std::process::Command::new("debugfs")
        .args(["-R", "ea_list /srv/labelled"])
        .arg(disk)
        .output()
        .unwrap();
    let xattrs = String::from_utf8_lossy(&xattrs.stdout);
    assert!(
        xattrs.contains("user.origin") && xattrs.contains("layer-3"),
        "{xattrs}"
    );
    let owned = ext4::stat(disk, "/srv-data").unwrap();
    assert_eq!(ext4::field(&owned, "User:").as_deref(), Some("1000"));
    assert_eq!(ext4::field(&owned, "Group:").as_deref(), Some("1000"));
}

#[test]
fn imports_an_oci_layout_faithfully() {
    ignite_testkit::require_root!("unpacking device nodes and ownership");
    let (dir, store) = new_store();
    let image = layered_image();
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "v1");
    let source = format!("oci:{}:v1", layout.display());
    let imported = import(&store, &source).unwrap();
    assert!(imported.fetched);
    let img = &imported.image;
    assert_eq!(img.metadata.name, source);
    assert_eq!(
        img.status.image_id.as_deref(),
        Some(image.config_digest().as_str())
    );
    assert_eq!(
        img.status.oci_source.id.as_deref(),
        Some(format!("docker://{}", image.config_digest()).as_str())
    );
    let config = img.status.config.as_ref().unwrap();
    assert_eq!(config.cmd, ["echo hi"]);
    assert_eq!(config.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(config.env, ["PATH=/usr/bin:/bin", "GREETING=hello"]);
    assert_eq!(
        (config.working_dir.as_str(), config.user.as_str()),
        ("/srv", "1000:1000")
    );
    assert_eq!(img.status.platform.as_deref(), Some("linux/amd64"));
    let disk = rootfs_path(&store, img.status.image_id.as_ref().unwrap());
    check_layered_rootfs(&disk);
    // Nothing is left in the staging area.
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);

    // The same digest again is instant.
    let start = Instant::now();
    let again = import(&store, &source).unwrap();
    assert!(!again.fetched);
    assert_eq!(again.image.metadata.uid, img.metadata.uid);
    assert!(start.elapsed().as_millis() < 500, "{:?}", start.elapsed());
}

#[test]
fn imports_a_docker_archive_and_shares_the_root_disk() {
    ignite_testkit::require_root!("unpacking ownership");
    let (dir, store) = new_store();
    let layer = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=test\n", 0o644)
        .finish(Compression::None);
    let second = LayerBuilder::new()
        .whiteout("etc", "os-release")
        .file("hello", b"hi\n", 0o644)
        .finish(Compression::None);
    let image = Image::new(vec![layer, second], &["sh"]);
    let archive = dir.path().join("image.tar");
    image.write_docker_archive(&archive, "test/app:1");
    let from_archive = import(&store, &format!("docker-archive:{}", archive.display()))
        .unwrap()
        .image;
    // Named as `docker load` names it: by the archive's tags.
    assert_eq!(from_archive.metadata.name, "test/app:1");
    let disk = rootfs_path(&store, from_archive.status.image_id.as_ref().unwrap());
    assert!(ext4::fsck_clean(&disk));
    assert_eq!(ext4::all_paths(&disk), ["/etc", "/hello"]);

    // Docker 25's archive layout (OCI blobs plus manifest.json) gives the same image.
    let modern = dir.path().join("modern.tar");
    image.write_docker_archive_oci(&modern, "test/app:2");
    let from_modern = import(&store, &format!("docker-archive:{}", modern.display()))
        .unwrap()
        .image;
    assert_eq!(from_modern.metadata.name, "test/app:2");
    assert_eq!(from_modern.status.image_id, from_archive.status.image_id);
    remove_image(&store, &from_modern.metadata.name, false).unwrap();

    // The same image from an OCI layout has the same id and reuses the root disk.
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "latest");
    let modified_before = fs::metadata(&disk).unwrap().modified().unwrap();
    let from_layout = import(&store, &format!("oci:{}", layout.display()))
        .unwrap()
        .image;
    assert_eq!(from_layout.status.image_id, from_archive.status.image_id);
    assert_eq!(
        fs::metadata(&disk).unwrap().modified().unwrap(),
        modified_before
    );
    // Removing one name keeps the disk the other still uses.
    remove_image(&store, &from_archive.metadata.name, false).unwrap();
    assert!(disk.exists());
    remove_image(&store, &from_layout.metadata.name, false).unwrap();
    assert!(!disk.exists());
}

fn expect_refused(image: Image, needle: &str) {
    let (dir, store) = new_store();
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "bad");
    let before: Vec<_> = walk(Path::new("/etc"));
    let err = import(&store, &format!("oci:{}:bad", layout.display()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(
        store.images().list().unwrap().objects.is_empty(),
        "nothing may be registered"
    );
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).map_or(0, |d| d.count()),
        0,
        "no staging left"
    );
    let rootfs = store.root().join("rootfs");
    assert_eq!(
        fs::read_dir(&rootfs).map_or(0, |d| d.count()),
        0,
        "no root disk left"
    );
    assert_eq!(walk(Path::new("/etc")), before, "the host was not touched");
    assert!(!Path::new("/tmp/ignite-escape-test").exists());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn one_layer(b: LayerBuilder) -> Image {
    Image::new(vec![b.finish(Compression::Gzip)], &["sh"])
}

#[test]
fn hostile_layers_are_refused() {
    ignite_testkit::require_root!("unpacking");
    expect_refused(
        one_layer(LayerBuilder::new().file("../ignite-escape-test", b"x", 0o644)),
        "contains '..'",
    );
    expect_refused(
        one_layer(LayerBuilder::new().file("/tmp/ignite-escape-test", b"x", 0o644)),
        "absolute path",
    );
    expect_refused(
        one_layer(
            LayerBuilder::new()
                .symlink("up", "../../../../../../tmp")
                .file("up/ignite-escape-test", b"x", 0o644),
        ),
        "climbs out of the image root",
    );
    expect_refused(
        one_layer(LayerBuilder::new().symlink("deep", "a/../../..").file(
            "deep/ignite-escape-test",
            b"x",
            0o644,
        )),
        "climbs out of the image root",
    );
    expect_refused(
        one_layer(LayerBuilder::new().hardlink("passwd", "../../etc/passwd")),
        "hardlink target",
    );
    expect_refused(
        one_layer(LayerBuilder::new().hardlink("passwd", "/etc/passwd")),
        "hardlink target",
    );
    expect_refused(
        one_layer(
            LayerBuilder::new()
                .symlink("up", "../../..")
                .hardlink("passwd", "up/etc/passwd"),
        ),
        "hardlink target",
    );
    expect_refused(
        one_layer(LayerBuilder::new().hardlink("x", "missing")),
        "does not have",
    );
    expect_refused(
        Image::new(
            vec![
                LayerBuilder::new()
                    .symlink("up", "../..")
                    .finish(Compression::Gzip),
                LayerBuilder::new()
                    .whiteout("up", "ignite-escape-test")
                    .finish(Compression::Gzip),
            ],
            &["sh"],
        ),
        "climbs out of the image root",
    );
    expect_refused(
        one_layer(LayerBuilder::new().file("a/.wh...", b"", 0o644)),
        "malformed whiteout",
    );
}

fn tamper(image: &Image, change: impl FnOnce(&mut Layer)) -> Image {
    let mut layers = image.layers.clone();
    change(&mut layers[0]);
    // Keep the manifest's claims (digest, size) and the config's diff_ids as they were.
    Image {
        layers,
        config: image.config.clone(),
        manifest: image.manifest.clone(),
    }
}

#[test]
fn corrupt_truncated_and_oversized_blobs_are_refused() {
    ignite_testkit::require_root!("unpacking");
    let good = one_layer(LayerBuilder::new().file("a", &[1u8; 10_000], 0o644));
    // A different blob under the manifest's digest and size.
    let corrupt = tamper(&good, |l| {
        let n = l.blob.len();
        l.blob = LayerBuilder::new()
            .file("b", &[2u8; 10_000], 0o644)
            .finish(Compression::Gzip)
            .blob;
        l.blob.resize(n, 0);
    });
    expect_refused_raw(&corrupt, "does not match its digest");
    expect_refused_raw(
        &tamper(&good, |l| l.blob.truncate(l.blob.len() - 10)),
        "truncated",
    );
    expect_refused_raw(
        &tamper(&good, |l| l.blob.extend_from_slice(&[0u8; 64])),
        "oversized",
    );
    // Right blob, but the config claims another diff_id.
    let mut wrong_diff = good.clone();
    wrong_diff.config = String::from_utf8(good.config.clone())
        .unwrap()
        .replace(&good.layers[0].diff_id, &good.layers[0].digest)
        .into_bytes();
    let wrong_diff = Image::new(good.layers.clone(), &["sh"]).with_config(wrong_diff.config);
    expect_refused(wrong_diff, "diff_id");
}

/// Like `expect_refused`, for a layout whose blob files do not match the manifest.
fn expect_refused_raw(image: &Image, needle: &str) {
    let (dir, store) = new_store();
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "bad");
    // The layout stores blobs by their real digest: put the tampered bytes where the
    // manifest points.
    let claimed = serde_json::from_slice::<serde_json::Value>(&image.manifest).unwrap()["layers"]
        [0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    fs::write(
        layout.join("blobs/sha256").join(claimed),
        &image.layers[0].blob,
    )
    .unwrap();
    let err = import(&store, &format!("oci:{}:bad", layout.display()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(store.images().list().unwrap().objects.is_empty());
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).map_or(0, |d| d.count()),
        0
    );
}

#[test]
fn pulls_from_a_registry_and_shares_blobs() {
    ignite_testkit::require_root!("unpacking");
    let registry = Registry::start(None);
    let image = layered_image();
    let reference = registry.push("test/layered", "v1", &image);
    let (_dir, store) = new_store();
    let imported = import(&store, &reference).unwrap().image;
    assert_eq!(imported.metadata.name, reference);
    assert_eq!(
        imported.status.oci_source.id.as_deref(),
        Some(
            format!(
                "oci://{}/test/layered@{}",
                registry.host,
                image.manifest_digest()
            )
            .as_str()
        )
    );
    check_layered_rootfs(&rootfs_path(
        &store,
        imported.status.image_id.as_ref().unwrap(),
    ));
    // Layers are stored once by digest.
    for layer in &image.layers {
        assert!(
            store
                .root()
                .join("blobs/sha256")
                .join(layer.digest.trim_start_matches("sha256:"))
                .exists()
        );
    }
    // By digest too.
    let by_digest = format!("{}/test/layered@{}", registry.host, image.manifest_digest());
    let again = import(&store, &by_digest).unwrap().image;
    assert_eq!(again.status.image_id, imported.status.image_id);
    // A missing tag is a clear error.
    let err = import(&store, &format!("{}/test/layered:nope", registry.host))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn pull_re_resolves_a_moved_tag() {
    ignite_testkit::require_root!("unpacking");
    let registry = Registry::start(None);
    let (_dir, store) = new_store();
    let first = Image::new(
        vec![
            LayerBuilder::new()
                .file("version", b"1\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    let second = Image::new(
        vec![
            LayerBuilder::new()
                .file("version", b"2\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    let reference = registry.push("test/moving", "latest", &first);
    let v1 = import(&store, &reference).unwrap().image;
    registry.push("test/moving", "latest", &second);
    // Without --pull the imported image is reused, as Ignite did.
    assert_eq!(
        import(&store, &reference).unwrap().image.status.image_id,
        v1.status.image_id
    );
    let options = ImportOptions {
        pull: true,
        ..ImportOptions::default()
    };
    let v2 = import_image(&store, &reference, &options, &NoProgress)
        .unwrap()
        .image;
    assert_eq!(v2.metadata.uid, v1.metadata.uid, "the same Image, updated");
    assert_eq!(
        v2.status.image_id.as_deref(),
        Some(second.config_digest().as_str())
    );
    let disk = rootfs_path(&store, v2.status.image_id.as_ref().unwrap());
    assert_eq!(ext4::read_file(&disk, "/version").unwrap(), b"2\n");
    assert!(
        !rootfs_path(&store, v1.status.image_id.as_ref().unwrap()).exists(),
        "the old disk is gone"
    );
    // Still current: --pull does nothing.
    assert!(
        !import_image(&store, &reference, &options, &NoProgress)
            .unwrap()
            .fetched
    );
}

#[test]
fn registry_with_basic_auth() {
    ignite_testkit::require_root!("unpacking");
    let registry = Registry::start(Some(("alice", "s3cret")));
    let image = Image::new(
        vec![
            LayerBuilder::new()
                .file("secret", b"x\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    let reference = registry.push("private/app", "v1", &image);
    let (dir, store) = new_store();
    let err = import(&store, &reference).unwrap_err().to_string();
    assert!(
        err.contains("none is configured") || err.contains("authentication failed"),
        "{err}"
    );
    let config_dir = dir.path().join("docker");
    fs::create_dir_all(&config_dir).unwrap();
    registry.write_docker_config(&config_dir);
    let options = ImportOptions {
        registry_config_dir: Some(config_dir.clone()),
        ..ImportOptions::default()
    };
    let imported = import_image(&store, &reference, &options, &NoProgress)
        .unwrap()
        .image;
    assert_eq!(
        imported.status.image_id.as_deref(),
        Some(image.config_digest().as_str())
    );
    // Wrong password: refused with a clear message.
    fs::write(
        config_dir.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "alice", "password": "wrong"}}}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let (_d2, other) = new_store();
    let err = import_image(&other, &reference, &options, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn manifest_lists_select_the_platform() {
    ignite_testkit::require_root!("unpacking");
    let registry = Registry::start(None);
    let amd = Image::for_platform(
        vec![
            LayerBuilder::new()
                .file("arch", b"amd64\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
        "amd64",
    );
    let arm = Image::for_platform(
        vec![
            LayerBuilder::new()
                .file("arch", b"arm64\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
        "arm64",
    );
    let reference =
        registry.push_index("test/multi", "latest", &[("amd64", &amd), ("arm64", &arm)]);
    let (_dir, store) = new_store();
    let host = import(&store, &reference).unwrap().image;
    assert_eq!(
        host.status.image_id.as_deref(),
        Some(amd.config_digest().as_str())
    );
    let (_dir2, store2) = new_store();
    let options = ImportOptions {
        platform: Some("linux/arm64".into()),
        ..ImportOptions::default()
    };
    let other = import_image(&store2, &reference, &options, &NoProgress)
        .unwrap()
        .image;
    assert_eq!(
        other.status.image_id.as_deref(),
        Some(arm.config_digest().as_str())
    );
    assert_eq!(other.status.platform.as_deref(), Some("linux/arm64"));
    let (_dir3, store3) = new_store();
    let options = ImportOptions {
        platform: Some("linux/s390x".into()),
        ..ImportOptions::default()
    };
    let err = import_image(&store3, &reference, &options, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no image for linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn a_killed_import_leaves_nothing_behind() {
    ignite_testkit::require_root!("unpacking");
    let (dir, store) = new_store();
    // What a killed import leaves: a staging directory whose process is gone.
    let abandoned = store.root().join("tmp/import-999999999-abc");
    fs::create_dir_all(abandoned.join("rootfs/etc")).unwrap();
    let layout = dir.path().join("layout");
    one_layer(LayerBuilder::new().file("a", b"a", 0o644)).write_oci_layout(&layout, "v1");
    import(&store, &format!("oci:{}:v1", layout.display())).unwrap();
    assert!(!abandoned.exists());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

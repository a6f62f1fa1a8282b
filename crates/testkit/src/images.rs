//! Images built in memory: tar layers (with whiteouts, opaque directories, links, device
//! nodes), compressed or not, written as an OCI layout or a `docker save` archive.

use std::path::Path;

use sha2::{Digest as _, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One layer being built.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    /// Writes a raw entry name, bypassing the tar crate's own path checks (hostile names).
    fn append_raw(&mut self, mut h: tar::Header, name: &str, data: &[u8]) {
        let bytes = name.as_bytes();
        assert!(bytes.len() < 100, "test names are short");
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name = [0; 100];
        gnu.name[..bytes.len()].copy_from_slice(bytes);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.tar.append(&h, data).expect("append to memory");
    }

    fn set_link(h: &mut tar::Header, target: &str) {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.linkname = [0; 100];
        gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
    }

    pub fn dir(mut self, name: &str, mode: u32) -> Self {
        self.append_raw(header(tar::EntryType::Directory, mode), name, b"");
        self
    }

    pub fn file(mut self, name: &str, content: &[u8], mode: u32) -> Self {
        self.append_raw(header(tar::EntryType::Regular, mode), name, content);
        self
    }

    pub fn owned_file(mut self, name: &str, content: &[u8], uid: u64, gid: u64) -> Self {
        let mut h = header(tar::EntryType::Regular, 0o640);
        h.set_uid(uid);
        h.set_gid(gid);
        self.append_raw(h, name, content);
        self
    }

    /// A file with an extended attribute, carried in a PAX header as Docker writes it.
    pub fn file_with_xattr(
        mut self,
        name: &str,
        content: &[u8],
        xattr: &str,
        value: &[u8],
    ) -> Self {
        let key = format!("SCHILY.xattr.{xattr}");
        self.tar
            .append_pax_extensions([(key.as_str(), value)])
            .expect("pax header");
        self.append_raw(header(tar::EntryType::Regular, 0o644), name, content);
        self
    }

    /// A file with every attribute given: owner, mode (setuid bits too), mtime, and
    /// extended attributes in a PAX header as Docker writes them.
    #[allow(clippy::too_many_arguments)]
    pub fn file_full(
        mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        xattrs: &[(&str, &[u8])],
    ) -> Self {
        if !xattrs.is_empty() {
            let keys: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            self.tar
                .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
                .expect("pax header");
        }
        let mut h = header(tar::EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.append_raw(h, name, content);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        Self::set_link(&mut h, target);
        self.append_raw(h, name, b"");
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644);
        Self::set_link(&mut h, target);
        self.append_raw(h, name, b"");
        self
    }

    pub fn char_device(mut self, name: &str, major: u32, minor: u32) -> Self {
        let mut h = header(tar::EntryType::Char, 0o666);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.append_raw(h, name, b"");
        self
    }

    /// A GNU sparse file of `real_size` bytes that stores only `tail` (at its end): a
    /// layer of a few KiB that declares as much as it likes.
    pub fn sparse_file(mut self, name: &str, real_size: u64, tail: &[u8]) -> Self {
        let mut h = header(tar::EntryType::GNUSparse, 0o644);
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.set_real_size(real_size);
        gnu.sparse[0].set_offset(real_size - tail.len() as u64);
        gnu.sparse[0].set_length(tail.len() as u64);
        self.append_raw(h, name, tail);
        self
    }

    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"", 0o644)
    }

    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    pub fn finish(self, compression: Compression) -> Layer {
        let tar = self.tar.into_inner().expect("finish tar");
        let diff_id = sha256(&tar);
        let (blob, media_type) = match compression {
            Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Compression::Zstd => (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        Layer {
            digest: sha256(&blob),
            blob,
            diff_id,
            media_type: media_type.to_string(),
        }
    }
}

/// A finished layer.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
}

/// A whole image: layers, config and manifest, as bytes.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    pub fn new(layers: Vec<Layer>, cmd: &[&str]) -> Image {
        Image::for_platform(layers, cmd, "amd64")
    }

    pub fn for_platform(layers: Vec<Layer>, cmd: &[&str], arch: &str) -> Image {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/usr/bin:/bin", "GREETING=hello"], "WorkingDir": "/srv", "User": "1000:1000", "Entrypoint": ["/bin/sh", "-c"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        Image {
            layers,
            config,
            manifest,
        }
    }

    /// The same image with another config (the manifest is rewritten to point at it).
    pub fn with_config(self, config: Vec<u8>) -> Image {
        let mut manifest: serde_json::Value = serde_json::from_slice(&self.manifest).unwrap();
        manifest["config"]["digest"] = sha256(&config).into();
        manifest["config"]["size"] = config.len().into();
        Image {
            layers: self.layers,
            config,
            manifest: serde_json::to_vec(&manifest).unwrap(),
        }
    }

    pub fn config_digest(&self) -> String {
        sha256(&self.config)
    }

    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Writes an OCI image layout with this image tagged `tag`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let d = sha256(bytes);
            std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        };
        for l in &self.layers {
            put(&l.blob);
        }
        put(&self.config);
        put(&self.manifest);
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": self.manifest_digest(),
                "size": self.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Writes what `docker save` writes since Docker 25: an OCI layout plus a
    /// `manifest.json` whose config and layers point into `blobs/sha256/`.
    pub fn write_docker_archive_oci(&self, file: &Path, repo_tag: &str) {
        let dir = tempfile::tempdir().unwrap();
        self.write_oci_layout(dir.path(), repo_tag);
        let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let manifest = serde_json::json!([{
            "Config": blob(&self.config_digest()),
            "RepoTags": [repo_tag],
            "Layers": self.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
        }]);
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", dir.path()).unwrap();
        std::fs::write(file, b.into_inner().unwrap()).unwrap();
    }

    /// Writes what the old `docker save` wrote: uncompressed `<id>/layer.tar` files, the
    /// config as `<hex>.json`, and `manifest.json`. Layers must be uncompressed.
    pub fn write_docker_archive(&self, file: &Path, repo_tag: &str) {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        let mut layer_names = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            assert_eq!(
                l.digest, l.diff_id,
                "docker-archive layers are uncompressed"
            );
            let name = format!("{:064x}/layer.tar", i + 1);
            add(&name, &l.blob);
            layer_names.push(name);
        }
        let config_name = format!(
            "{}.json",
            self.config_digest().trim_start_matches("sha256:")
        );
        add(&config_name, &self.config);
        let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        std::fs::write(file, b.into_inner().unwrap()).unwrap();
    }
}

/// A stand-in kernel: an ELF-looking file whose `Linux version <release> (...)` banner is
/// what kernel import reads the release from. Enough to import, not to boot.
pub fn fake_vmlinux(release: &str) -> Vec<u8> {
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(4096, 0);
    bytes.extend_from_slice(b"Linux version %s (%s)\0");
    bytes.extend_from_slice(
        format!("Linux version {release} (attacker@example.invalid) (gcc 12) #1 SMP\n\0")
            .as_bytes(),
    );
    bytes.resize(8192, 0);
    bytes
}

/// A gzip layer whose tar stream opens with a PAX extended header claiming `claimed`
/// bytes, followed by `zeros` zero bytes of it (compressed to almost nothing): a reader
/// that buffers extended headers whole takes `zeros` bytes of memory. Its diff_id is that
/// of the stream as written.
pub fn pax_bomb_layer(claimed: u64, zeros: u64) -> Layer {
    use std::io::Write;
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/bomb").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(claimed);
    h.set_cksum();
    let mut hasher = Sha256::new();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    hasher.update(h.as_bytes());
    e.write_all(h.as_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        hasher.update(&chunk[..n]);
        e.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    let blob = e.finish().unwrap();
    Layer {
        digest: sha256(&blob),
        blob,
        diff_id: format!(
            "sha256:{}",
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
    }
}

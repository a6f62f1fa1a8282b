//! Which certificates a registry connection trusts and presents, as Docker decides it: the
//! system's certificate store, plus the registry's own directory in Docker's `certs.d`
//! (`HOST[:PORT]/*.crt` extra CAs, `NAME.cert` + `NAME.key` a client certificate for
//! mutual TLS).
//!
//! `certs.d` is `/etc/docker/certs.d` for root and, for other users, rootless Docker's
//! `$XDG_CONFIG_HOME/docker/certs.d` (`~/.config/docker/certs.d`); `IGNITE_REGISTRY_CERTS_DIR`
//! overrides both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::error::{OciError, Result};

/// Overrides the `certs.d` directory (for tests, and hosts that keep it elsewhere).
pub const CERTS_DIR_ENV: &str = "IGNITE_REGISTRY_CERTS_DIR";

/// Docker's (rootful) per-registry certificate directory.
pub const DOCKER_CERTS_DIR: &str = "/etc/docker/certs.d";

/// The largest certificate or key file read from `certs.d`: real ones are a few KiB.
pub const MAX_CERT_FILE_BYTES: u64 = 1 << 20;

/// The largest system CA bundle read (Debian's is about 200 KiB).
const MAX_SYSTEM_BUNDLE_BYTES: u64 = 16 << 20;

/// The most `.crt`/`.cert`/`.key` files one registry's directory may hold.
const MAX_CERT_FILES: usize = 64;

/// Where the system's CA bundle is, by distribution (the list Go's crypto/x509 reads).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The `certs.d` directory: `$IGNITE_REGISTRY_CERTS_DIR`; else Docker's, which is
/// `/etc/docker/certs.d` for root and rootless Docker's `$XDG_CONFIG_HOME/docker/certs.d`
/// (`$HOME/.config/docker/certs.d`) for other users.
pub fn default_certs_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CERTS_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(dir.into());
    }
    if rustix::process::geteuid().is_root() {
        return Some(DOCKER_CERTS_DIR.into());
    }
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config_home.join("docker/certs.d"))
}

/// The name of a registry's directory in `certs.d`: its `HOST[:PORT]` as the image
/// reference spells it. Refused when it could name anything but one entry of `certs.d`
/// (`..`, a `/`), or holds what no host name does.
pub fn host_dir_name(domain: &str) -> std::result::Result<&str, String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    if domain.is_empty() || domain.len() > 255 {
        return Err("it is empty or longer than 255 characters".into());
    }
    if domain.starts_with('.') {
        return Err("it starts with '.'".into());
    }
    if let Some(c) = domain.chars().find(|c| !valid_char(*c)) {
        return Err(format!("it holds {c:?}, which no host name or port does"));
    }
    Ok(domain)
}

/// The certificates of one registry's `certs.d` directory.
#[derive(Debug, Default)]
pub struct RegistryCerts {
    /// The registry's directory, when there is one.
    pub dir: Option<PathBuf>,
    /// Extra CAs (`*.crt`).
    pub cas: Vec<CertificateDer<'static>>,
    /// The client certificate (`NAME.cert` + `NAME.key`).
    pub client: Option<ClientPair>,
}

/// A client certificate chain and its key, checked to belong together.
#[derive(Debug)]
pub struct ClientPair {
    /// The `.cert` file.
    pub path: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKey<'static>,
}

impl RegistryCerts {
    /// Reads `certs_dir/HOST[:PORT]/`; no directory means nothing extra.
    pub fn load(certs_dir: &Path, domain: &str) -> Result<RegistryCerts> {
        let name = host_dir_name(domain).map_err(|reason| OciError::Registry {
            registry: domain.to_string(),
            message: format!(
                "its name cannot name a directory in {}: {reason}",
                certs_dir.display()
            ),
        })?;
        let dir = certs_dir.join(name);
        let meta = match std::fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistryCerts::default());
            }
            Err(e) => return Err(crate::error::io("inspect", &dir)(e)),
        };
        if !meta.is_dir() {
            return Err(certs_error(
                &dir,
                "it is not a directory (symlinks are not followed): make it a directory holding the registry's *.crt, *.cert and *.key files",
            ));
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(crate::error::io("list", &dir))? {
            let entry = entry.map_err(crate::error::io("list", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if [".crt", ".cert", ".key"].iter().any(|e| name.ends_with(e)) {
                names.push(name);
            }
        }
        if names.len() > MAX_CERT_FILES {
            return Err(certs_error(
                &dir,
                &format!(
                    "it holds {} certificate and key files, more than the {MAX_CERT_FILES} accepted: remove the ones not in use",
                    names.len()
                ),
            ));
        }
        // Sorted, so that the client certificate used is the first by name, as in Docker.
        names.sort();
        let pairs = pair_client_files(&names).map_err(|reason| certs_error(&dir, &reason))?;
        let mut certs = RegistryCerts {
            dir: Some(dir.clone()),
            ..RegistryCerts::default()
        };
        for name in names.iter().filter(|n| n.ends_with(".crt")) {
            let path = dir.join(name);
            let cas = read_certificates(&path)?;
            let mut check = rustls::RootCertStore::empty();
            for ca in &cas {
                check.add(ca.clone()).map_err(|e| {
                    certs_error(
                        &path,
                        &format!(
                            "it holds a certificate that cannot be a CA ({e}): put the PEM certificate of the CA that signed the registry's certificate in it"
                        ),
                    )
                })?;
            }
            certs.cas.extend(cas);
        }
        if let Some((cert_name, key_name)) = pairs.first() {
            let cert_path = dir.join(cert_name);
            let key_path = dir.join(key_name);
            let chain = read_certificates(&cert_path)?;
            let (key, key_pem) = read_private_key(&key_path)?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            // ureq would panic on a key that is not the certificate's: checked here.
            rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider)
                .map_err(|e| {
                    certs_error(
                        &key_path,
                        &format!(
                            "it cannot be used with the client certificate {} ({e}): the .key must be the private key of the .cert beside it",
                            cert_path.display()
                        ),
                    )
                })?;
            let key = PrivateKey::from_pem(&key_pem).map_err(|e| {
                certs_error(&key_path, &format!("its private key cannot be used ({e})"))
            })?;
            certs.client = Some(ClientPair {
                path: cert_path,
                chain,
                key,
            });
        }
        Ok(certs)
    }

    /// The TLS settings of a connection to the registry: the system's CAs and the extra
    /// ones; the client certificate, if any.
    pub fn tls_config(&self) -> TlsConfig {
        let system = system_roots();
        let roots = if self.cas.is_empty() && system.is_empty() {
            // No system store (a minimal container): the CAs built into the binary.
            RootCerts::WebPki
        } else {
            let mut roots: Vec<Certificate<'static>> = system.to_vec();
            roots.extend(self.cas.iter().map(ureq_certificate));
            RootCerts::from(roots)
        };
        let client = self.client.as_ref().map(|pair| {
            let chain: Vec<_> = pair.chain.iter().map(ureq_certificate).collect();
            ClientCert::new_with_certs(&chain, pair.key.to_owned())
        });
        TlsConfig::builder()
            .root_certs(roots)
            .client_cert(client)
            .build()
    }
}

fn ureq_certificate(der: &CertificateDer<'_>) -> Certificate<'static> {
    Certificate::from_der(der.as_ref()).to_owned()
}

fn certs_error(path: &Path, reason: &str) -> OciError {
    OciError::RegistryCerts {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Pairs `NAME.cert` with `NAME.key` (client certificates), as Docker does: a `.cert`
/// without its `.key`, or a `.key` without its `.cert`, is an error.
pub fn pair_client_files(names: &[String]) -> std::result::Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for name in names {
        if let Some(base) = name.strip_suffix(".cert") {
            let key = format!("{base}.key");
            if !names.contains(&key) {
                return Err(format!(
                    "the client certificate {name} has no key {key} beside it: add it (CA certificates end in .crt, not .cert)"
                ));
            }
            pairs.push((name.clone(), key));
        } else if let Some(base) = name.strip_suffix(".key") {
            let cert = format!("{base}.cert");
            if !names.contains(&cert) {
                return Err(format!(
                    "the key {name} has no client certificate {cert} beside it: add it, or remove the key"
                ));
            }
        }
    }
    Ok(pairs)
}

/// Reads a `certs.d` file: a regular file, not through a symlink (`O_NOFOLLOW`: the
/// directory may be a user's, the connection root's), at most [`MAX_CERT_FILE_BYTES`].
fn read_certs_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(certs_error(
                path,
                "it is a symlink, which is not followed: replace it with the file itself",
            ));
        }
        Err(e) => return Err(crate::error::io("open", path)(e)),
    };
    if !file
        .metadata()
        .map_err(crate::error::io("inspect", path))?
        .is_file()
    {
        return Err(certs_error(
            path,
            "it is not a regular file: replace it with the PEM file itself",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CERT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(crate::error::io("read", path))?;
    if bytes.len() as u64 > MAX_CERT_FILE_BYTES {
        return Err(OciError::TooLarge {
            what: format!("registry certificate file {}", path.display()),
            limit: MAX_CERT_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// The PEM certificates of a `certs.d` file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read_certs_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            certs_error(
                path,
                &format!("it is not valid PEM ({e}): it must hold PEM certificates (-----BEGIN CERTIFICATE-----)"),
            )
        })?;
    if certs.is_empty() {
        return Err(certs_error(
            path,
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the certificate in PEM form in it, or remove it",
        ));
    }
    Ok(certs)
}

/// The key of a `.key` file, and the file's bytes.
fn read_private_key(path: &Path) -> Result<(PrivateKeyDer<'static>, Vec<u8>)> {
    let bytes = read_certs_file(path)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        certs_error(
            path,
            &format!(
                "it holds no usable PEM private key ({e}): it must hold the client certificate's unencrypted key (-----BEGIN PRIVATE KEY-----, RSA or EC)"
            ),
        )
    })?;
    Ok((key, bytes))
}

/// The system's CAs: `$SSL_CERT_FILE`, else the distribution's bundle; read once. Empty
/// when there is none. Certificates of it that do not parse are skipped, as Go and
/// OpenSSL do: the store is the system's, not this registry's.
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let candidates: Vec<PathBuf> = match std::env::var_os("SSL_CERT_FILE") {
            Some(f) if !f.is_empty() => vec![f.into()],
            _ => SYSTEM_BUNDLES.iter().map(PathBuf::from).collect(),
        };
        for path in candidates {
            // The distribution's bundle may be a symlink (Fedora's are): followed.
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let mut bytes = Vec::new();
            if std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_SYSTEM_BUNDLE_BYTES),
                &mut bytes,
            )
            .is_err()
            {
                continue;
            }
            let roots: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
                .filter_map(std::result::Result::ok)
                .map(|c| ureq_certificate(&c))
                .collect();
            if !roots.is_empty() {
                tracing::debug!(bundle = %path.display(), count = roots.len(), "system CAs");
                return roots;
            }
        }
        Vec::new()
    })
}

/// What a failed TLS connection says about certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// The registry's certificate was not trusted (or not valid for it).
    Untrusted(String),
    /// The registry refused the handshake over certificates: it wants a client
    /// certificate (none, or one it does not trust).
    ClientCertRefused(String),
}

/// The certificate problem behind a failed request, if it was one: the server spoke TLS,
/// so falling back to plain HTTP would not help.
pub fn tls_problem(error: &ureq::Error) -> Option<TlsProblem> {
    let rustls_error = match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    use rustls::AlertDescription as A;
    match rustls_error {
        rustls::Error::InvalidCertificate(e) => Some(TlsProblem::Untrusted(e.to_string())),
        rustls::Error::AlertReceived(
            alert @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::AccessDenied
            | A::HandshakeFailure),
        ) => Some(TlsProblem::ClientCertRefused(format!(
            "it sent the TLS alert {alert:?}"
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_directories_are_one_plain_entry_of_certs_d() {
        for ok in [
            "registry.example.com",
            "127.0.0.1:5000",
            "localhost:5443",
            "[::1]:5000",
            "my_reg-1.lan",
        ] {
            assert_eq!(host_dir_name(ok), Ok(ok));
        }
        for bad in [
            "",
            "..",
            ".",
            ".hidden",
            "../etc",
            "a/b",
            "/etc",
            "a\\b",
            "a\0b",
            "a b",
            "é.example",
        ] {
            assert!(host_dir_name(bad).is_err(), "{bad:?}");
        }
        assert!(host_dir_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn client_certificates_pair_by_name_and_a_half_pair_is_an_error() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pair_client_files(&names(&["a.cert", "a.key", "ca.crt", "b.cert", "b.key"])).unwrap(),
            vec![
                ("a.cert".to_string(), "a.key".to_string()),
                ("b.cert".to_string(), "b.key".to_string())
            ]
        );
        assert!(pair_client_files(&names(&["ca.crt"])).unwrap().is_empty());
        let err = pair_client_files(&names(&["client.cert"])).unwrap_err();
        assert!(err.contains("has no key client.key"), "{err}");
        assert!(err.contains(".crt, not .cert"), "{err}");
        let err = pair_client_files(&names(&["client.key", "ca.crt"])).unwrap_err();
        assert!(err.contains("no client certificate client.cert"), "{err}");
    }

    #[test]
    fn a_missing_directory_adds_nothing_and_a_path_as_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let certs = RegistryCerts::load(dir.path(), "reg.example:5000").unwrap();
        assert!(certs.dir.is_none() && certs.cas.is_empty() && certs.client.is_none());
        let err = RegistryCerts::load(dir.path(), "../x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot name a directory"), "{err}");
    }

    #[test]
    fn bad_files_are_named_and_oversized_or_symlinked_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg.example:5000");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("ca.crt"), b"not a certificate").unwrap();
        let err = RegistryCerts::load(dir.path(), "reg.example:5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.crt"), "{err}");
        assert!(err.contains("holds no PEM certificate"), "{err}");

        std::fs::write(
            host.join("ca.crt"),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = RegistryCerts::load(dir.path(), "reg.example:5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be a CA"), "{err}");

        std::fs::remove_file(host.join("ca.crt")).unwrap();
        std::fs::write(
            host.join("big.crt"),
            vec![b'a'; MAX_CERT_FILE_BYTES as usize + 1],
        )
        .unwrap();
        let err = RegistryCerts::load(dir.path(), "reg.example:5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than the 1048576 bytes"), "{err}");

        std::fs::remove_file(host.join("big.crt")).unwrap();
        std::os::unix::fs::symlink("/etc/ssl/certs/ca-certificates.crt", host.join("ca.crt"))
            .unwrap();
        let err = RegistryCerts::load(dir.path(), "reg.example:5000")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("it is a symlink, which is not followed"),
            "{err}"
        );

        std::fs::remove_file(host.join("ca.crt")).unwrap();
        std::fs::write(host.join("client.cert"), b"").unwrap();
        let err = RegistryCerts::load(dir.path(), "reg.example:5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no key client.key"), "{err}");

        // The registry's directory itself is not followed either.
        let linked = dir.path().join("linked:5000");
        std::os::unix::fs::symlink(&host, &linked).unwrap();
        let err = RegistryCerts::load(dir.path(), "linked:5000")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a directory (symlinks are not followed)"),
            "{err}"
        );
    }
}

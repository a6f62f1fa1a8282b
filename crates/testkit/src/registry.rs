//! A real OCI registry (Debian's `docker-registry`) on 127.0.0.1, started and stopped by
//! the test, and a minimal client that pushes images to it. Over plain HTTP, or over
//! HTTPS with a CA of the test's own (made with the `openssl` CLI), optionally requiring
//! client certificates.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::images::{Image, sha256};

pub struct Registry {
    child: Child,
    pub host: String,
    auth: Option<(String, String)>,
    tls: Option<TlsFiles>,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// How a registry speaks HTTPS ([`Registry::start_tls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// A server certificate for 127.0.0.1 signed by the test's CA.
    Server,
    /// That, and clients must present a certificate signed by the same CA
    /// (`http.tls.clientcas`).
    ClientCertRequired,
}

/// The PEM files of a TLS registry: its CA and a client certificate signed by it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_required: bool,
}

impl Registry {
    /// Starts a registry; with `auth`, it requires that user and password (htpasswd).
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        Self::start_with(auth, None)
    }

    /// Starts a registry over HTTPS, its certificate signed by a CA made for it (see
    /// [`Registry::tls_files`]); with `auth`, it requires that user and password.
    pub fn start_tls(auth: Option<(&str, &str)>, tls: Tls) -> Registry {
        Self::start_with(auth, Some(tls))
    }

    fn start_with(auth: Option<(&str, &str)>, tls: Option<Tls>) -> Registry {
        crate::require_program("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let tls_files = tls.map(|tls| {
            let files = make_certificates(dir.path(), tls == Tls::ClientCertRequired);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
            if files.client_required {
                config.push_str(&format!("    clientcas:\n      - {}\n", files.ca.display()));
            }
            files
        });
        if let Some((user, password)) = auth {
            crate::require_program("htpasswd", "apache2-utils");
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                htpasswd.display()
            ));
        }
        Self::launch(dir, port, config, auth, tls_files)
    }

    /// Starts a registry whose clients must get a token from `realm` (a token service the
    /// test runs, or none): it answers every request with a Bearer challenge naming it.
    /// Clients are given `user`/`password` by [`Registry::write_docker_config`].
    pub fn start_with_token_realm(user: &str, password: &str, realm: &str) -> Registry {
        crate::require_program("docker-registry", "docker-registry");
        crate::require_program("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The registry verifies tokens against this certificate (none is ever issued).
        let cert = dir.path().join("token.pem");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=ignite-test-token"])
            .arg("-keyout")
            .arg(dir.path().join("token.key"))
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl failed");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}\n    service: ignite-test\n    issuer: ignite-test\n    rootcertbundle: {}\n",
            dir.path().join("data").display(),
            cert.display()
        );
        Self::launch(dir, port, config, Some((user, password)), None)
    }

    fn launch(
        dir: tempfile::TempDir,
        port: u16,
        config: String,
        auth: Option<(&str, &str)>,
        tls: Option<TlsFiles>,
    ) -> Registry {
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let mut agent = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(files) = &tls {
            // The pushing client trusts the test's CA only, and always has a client certificate.
            use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
            let ca = Certificate::from_pem(&std::fs::read(&files.ca).unwrap()).unwrap();
            let cert = Certificate::from_pem(&std::fs::read(&files.client_cert).unwrap()).unwrap();
            let key = PrivateKey::from_pem(&std::fs::read(&files.client_key).unwrap()).unwrap();
            agent = agent.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&[ca]))
                    .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
                    .build(),
            );
        }
        let agent: ureq::Agent = agent.build().into();
        let registry = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            tls,
            _dir: dir,
            agent,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if registry
                .agent
                .get(&format!("{}/v2/", registry.base_url()))
                .call()
                .is_ok()
            {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not come up on {}", registry.host);
    }

    /// `http://HOST:PORT`, or `https://HOST:PORT` for a TLS registry.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// The CA and client certificate of a registry started with [`Registry::start_tls`].
    pub fn tls_files(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("a registry started with start_tls")
    }

    /// Puts the registry's CA where Docker looks for it, `certs_dir/HOST:PORT/ca.crt`;
    /// with `client_cert`, also its client certificate (`client.cert`, `client.key`).
    pub fn install_certs(&self, certs_dir: &Path, client_cert: bool) {
        let files = self.tls_files();
        let dir = certs_dir.join(&self.host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&files.ca, dir.join("ca.crt")).unwrap();
        if client_cert {
            std::fs::copy(&files.client_cert, dir.join("client.cert")).unwrap();
            std::fs::copy(&files.client_key, dir.join("client.key")).unwrap();
        }
    }

    /// The `auth` value of a Docker `config.json` entry for this registry's user.
    pub fn basic_auth(&self) -> String {
        let (u, p) = self.auth.as_ref().expect("a registry with auth");
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    }

    fn authorization(&self) -> Option<String> {
        self.auth.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
    }

    fn put_blob(&self, repo: &str, bytes: &[u8]) {
        let digest = sha256(bytes);
        let mut post = self
            .agent
            .post(&format!("{}/v2/{repo}/blobs/uploads/", self.base_url()));
        if let Some(a) = self.authorization() {
            post = post.header("Authorization", &a);
        }
        let response = post.send_empty().unwrap();
        assert_eq!(response.status(), 202, "starting an upload");
        let location = response
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base_url())
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut put = self
            .agent
            .put(&format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = self.authorization() {
            put = put.header("Authorization", &a);
        }
        let response = put.send(bytes).unwrap();
        assert_eq!(response.status(), 201, "uploading {digest}");
    }

    fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8], media_type: &str) {
        let mut put = self
            .agent
            .put(&format!(
                "{}/v2/{repo}/manifests/{reference}",
                self.base_url()
            ))
            .header("Content-Type", media_type);
        if let Some(a) = self.authorization() {
            put = put.header("Authorization", &a);
        }
        let response = put.send(bytes).unwrap();
        assert_eq!(response.status(), 201, "putting manifest {reference}");
    }

    /// Pushes `image` as `<host>/<repo>:<tag>` and returns that reference.
    pub fn push(&self, repo: &str, tag: &str, image: &Image) -> String {
        self.push_blobs(repo, image);
        self.put_manifest(
            repo,
            tag,
            &image.manifest,
            "application/vnd.oci.image.manifest.v1+json",
        );
        format!("{}/{repo}:{tag}", self.host)
    }

    fn push_blobs(&self, repo: &str, image: &Image) {
        for l in &image.layers {
            self.put_blob(repo, &l.blob);
        }
        self.put_blob(repo, &image.config);
    }

    /// Pushes several platform variants under one tag, as an OCI image index.
    pub fn push_index(&self, repo: &str, tag: &str, variants: &[(&str, &Image)]) -> String {
        let mut manifests = Vec::new();
        for (arch, image) in variants {
            self.push_blobs(repo, image);
            let digest = image.manifest_digest();
            self.put_manifest(
                repo,
                &digest,
                &image.manifest,
                "application/vnd.oci.image.manifest.v1+json",
            );
            manifests.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": image.manifest.len(),
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        self.put_manifest(repo, tag, &index, "application/vnd.oci.image.index.v1+json");
        format!("{}/{repo}:{tag}", self.host)
    }

    /// Writes a Docker `config.json` with this registry's credentials into `dir`.
    pub fn write_docker_config(&self, dir: &Path) {
        let config = serde_json::json!({"auths": {self.host.clone(): {"auth": self.basic_auth()}}});
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes, in `dir`, a CA (`ca.crt`), a server certificate for 127.0.0.1 signed by it
/// (`server.crt`, `server.key`) and a client certificate signed by it (`client.crt`,
/// `client.key`), with the `openssl` CLI. Valid for a day.
fn make_certificates(dir: &Path, client_required: bool) -> TlsFiles {
    crate::require_program("openssl", "openssl");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=ignite-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    for (serial, name, extensions) in [
        (
            "1",
            "server",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "2",
            "client",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), extensions).unwrap();
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN=ignite-test-{name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]);
    }
    TlsFiles {
        ca: dir.join("ca.crt"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        client_required,
    }
}

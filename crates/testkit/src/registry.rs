//! A real OCI registry (Debian's `docker-registry`) on 127.0.0.1, started and stopped by
//! the test, and a minimal client that pushes images to it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::images::{Image, sha256};

pub struct Registry {
    child: Child,
    pub host: String,
    auth: Option<(String, String)>,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Registry {
    /// Starts a registry; with `auth`, it requires that user and password (htpasswd).
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
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
        Self::launch(dir, port, config, auth)
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
        Self::launch(dir, port, config, Some((user, password)))
    }

    fn launch(
        dir: tempfile::TempDir,
        port: u16,
        config: String,
        auth: Option<(&str, &str)>,
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let registry = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            _dir: dir,
            agent,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if registry
                .agent
                .get(&format!("http://{}/v2/", registry.host))
                .call()
                .is_ok()
            {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not come up on {}", registry.host);
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
            .post(&format!("http://{}/v2/{repo}/blobs/uploads/", self.host));
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
            format!("http://{}{location}", self.host)
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
                "http://{}/v2/{repo}/manifests/{reference}",
                self.host
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
        let (u, p) = self.auth.as_ref().expect("a registry with auth");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        let config = serde_json::json!({"auths": {self.host.clone(): {"auth": auth}}});
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

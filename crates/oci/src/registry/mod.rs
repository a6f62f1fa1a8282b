//! A client for the OCI distribution API: manifests (and manifest lists) and blobs, with
//! anonymous, token (Bearer) and basic authentication. Registries are reached over HTTPS;
//! plain HTTP only for hosts configured as insecure (and loopback ones, as Docker does),
//! after HTTPS failed. HTTPS trusts the system's CAs and the registry's own in Docker's
//! `certs.d` (see [`tls`]), which may also hold a client certificate.

pub mod credentials;
pub mod tls;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use ignite_api::ImageReference;

use crate::blobs::{BlobStore, MAX_DOCUMENT_BYTES, verify_bytes};
use crate::digest::Digest;
use crate::error::{OciError, Result};
use crate::fetch::{
    FetchedImage, Layer, LayerLocation, Progress, is_index, parse_config, parse_manifest,
    select_platform,
};
use crate::spec::{Descriptor, Platform, media};
use credentials::{CredentialStore, Credentials};
use tls::{RegistryCerts, TlsProblem};

/// Parallel layer downloads.
const PARALLEL_DOWNLOADS: usize = 4;

pub struct RegistryClient {
    credentials: CredentialStore,
    insecure: Vec<String>,
    /// Docker's `certs.d`: per-registry CAs and client certificates.
    certs_dir: Option<PathBuf>,
    /// One agent per registry, each with that registry's TLS settings, and the client
    /// certificate it presents.
    agents: Mutex<HashMap<String, (ureq::Agent, Option<PathBuf>)>>,
    /// `Authorization` header values, per registry and repository.
    auth: Mutex<HashMap<String, String>>,
    /// Hosts that answered only over plain HTTP.
    plain_http: Mutex<HashMap<String, bool>>,
}

impl RegistryClient {
    /// `insecure` lists registries (`host[:port]`) that may be reached over plain HTTP.
    /// Certificates come from [`tls::default_certs_dir`].
    pub fn new(credentials: CredentialStore, insecure: Vec<String>) -> RegistryClient {
        RegistryClient {
            credentials,
            insecure,
            certs_dir: tls::default_certs_dir(),
            agents: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
            plain_http: Mutex::new(HashMap::new()),
        }
    }

    /// Reads registries' certificates from `dir` (`dir/HOST[:PORT]/`), or from nowhere.
    pub fn with_certs_dir(mut self, dir: Option<PathBuf>) -> RegistryClient {
        self.certs_dir = dir;
        self
    }

    /// The agent for the reference's registry: made on first use, with the registry's CAs
    /// and client certificate (a bad file there fails the import, naming it). The token
    /// service is reached with it too, as Docker does.
    fn agent(&self, reference: &ImageReference) -> Result<(ureq::Agent, Option<PathBuf>)> {
        let domain = reference.domain();
        if let Some(a) = self.agents.lock().expect("agent cache lock").get(domain) {
            return Ok(a.clone());
        }
        let certs = match &self.certs_dir {
            Some(dir) => RegistryCerts::load(dir, domain)?,
            None => RegistryCerts::default(),
        };
        if let Some(dir) = &certs.dir {
            tracing::debug!(
                registry = domain,
                dir = %dir.display(),
                cas = certs.cas.len(),
                client_cert = certs.client.is_some(),
                "registry certificates"
            );
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .user_agent(concat!("ignite/", env!("CARGO_PKG_VERSION")))
            .tls_config(certs.tls_config())
            .build()
            .into();
        let entry = (agent, certs.client.map(|pair| pair.path));
        self.agents
            .lock()
            .expect("agent cache lock")
            .insert(domain.to_string(), entry.clone());
        Ok(entry)
    }

    /// A failed request, said with what to do when it was a certificate problem.
    fn transport_error(
        &self,
        reference: &ImageReference,
        what: &str,
        client_cert: Option<&PathBuf>,
        error: &ureq::Error,
    ) -> OciError {
        let domain = reference.domain();
        let host_dir = self
            .certs_dir
            .clone()
            .unwrap_or_else(|| tls::DOCKER_CERTS_DIR.into())
            .join(domain);
        let message = match tls::tls_problem(error) {
            Some(TlsProblem::Untrusted(detail)) => format!(
                "its TLS certificate is not trusted ({detail}) reaching {what}: put the certificate of the CA that signed it in {}/ca.crt (as for Docker), or add it to the system's certificate store (Debian: copy it to /usr/local/share/ca-certificates/NAME.crt, run update-ca-certificates)",
                host_dir.display()
            ),
            Some(TlsProblem::ClientCertRefused(detail)) => format!(
                "it refused the TLS connection ({detail}) reaching {what}: it probably requires a client certificate it trusts{}: put one as NAME.cert, with its key as NAME.key, in {}/",
                client_cert.map_or_else(
                    || " and none is configured".to_string(),
                    |p| format!(", and refused {}", p.display())
                ),
                host_dir.display()
            ),
            None => format!("cannot reach {what}: {error}"),
        };
        Self::registry_error(reference, message)
    }

    fn may_use_http(&self, domain: &str) -> bool {
        let host = domain.rsplit_once(':').map_or(domain, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                domain
            }
        });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.insecure.iter().any(|i| i == domain || i == host)
            || host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    fn api_host(domain: &str) -> &str {
        if domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            domain
        }
    }

    fn registry_error(reference: &ImageReference, message: impl Into<String>) -> OciError {
        OciError::Registry {
            registry: reference.domain().to_string(),
            message: message.into(),
        }
    }

    /// GETs `/v2/<repo>/<path>`, authenticating when the registry asks to.
    fn get(
        &self,
        reference: &ImageReference,
        path: &str,
        accept: Option<&str>,
        range_from: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let domain = reference.domain();
        let auth_key = format!("{domain}/{}", reference.repository());
        let (agent, client_cert) = self.agent(reference)?;
        for attempt in 0..2 {
            let url = format!(
                "{}/v2/{}/{path}",
                self.base_url(reference)?,
                reference.repository()
            );
            let mut request = agent.get(&url);
            if let Some(a) = accept {
                request = request.header("Accept", a);
            }
            if let Some(offset) = range_from {
                request = request.header("Range", &format!("bytes={offset}-"));
            }
            if let Some(value) = self.auth.lock().expect("auth cache lock").get(&auth_key) {
                request = request.header("Authorization", value);
            }
            let response = request
                .call()
                .map_err(|e| self.transport_error(reference, &url, client_cert.as_ref(), &e))?;
            if response.status() != 401 || attempt == 1 {
                if response.status() == 401 {
                    return Err(Self::registry_error(
                        reference,
                        format!(
                            "authentication failed for {}: check the credentials (docker login, or --registry-config-dir)",
                            reference.repository()
                        ),
                    ));
                }
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let value = self.authenticate(reference, &challenge)?;
            self.auth
                .lock()
                .expect("auth cache lock")
                .insert(auth_key.clone(), value);
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn base_url(&self, reference: &ImageReference) -> Result<String> {
        let domain = reference.domain();
        let host = Self::api_host(domain);
        if let Some(plain) = self
            .plain_http
            .lock()
            .expect("scheme cache lock")
            .get(domain)
        {
            return Ok(format!(
                "{}://{host}",
                if *plain { "http" } else { "https" }
            ));
        }
        let https = format!("https://{host}");
        let plain = if self.may_use_http(domain) {
            // Probe HTTPS first; fall back to HTTP only when TLS cannot be spoken at all. A
            // certificate the registry sent and was not trusted, or one it wanted, means it
            // speaks TLS: plain HTTP would not help, and the user is told how to fix it.
            let (agent, client_cert) = self.agent(reference)?;
            let probe = format!("{https}/v2/");
            match agent.get(&probe).call() {
                Ok(_) => false,
                Err(e) if tls::tls_problem(&e).is_some() => {
                    return Err(self.transport_error(reference, &probe, client_cert.as_ref(), &e));
                }
                Err(e) => {
                    tracing::debug!(
                        registry = domain,
                        "HTTPS failed ({e}); using plain HTTP for this insecure registry"
                    );
                    true
                }
            }
        } else {
            false
        };
        self.plain_http
            .lock()
            .expect("scheme cache lock")
            .insert(domain.to_string(), plain);
        Ok(if plain {
            format!("http://{host}")
        } else {
            https
        })
    }

    /// Answers a `WWW-Authenticate` challenge with an `Authorization` header value.
    fn authenticate(&self, reference: &ImageReference, challenge: &str) -> Result<String> {
        let creds = self.credentials.get(reference.domain())?;
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let Some(c) = creds else {
                    return Err(Self::registry_error(
                        reference,
                        "it asks for a user name and password, and none is configured (docker login, or --registry-config-dir)",
                    ));
                };
                Ok(basic_header(&c))
            }
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    Self::registry_error(
                        reference,
                        format!("its token challenge has no realm: {challenge:?}"),
                    )
                })?;
                let registry_plain = self
                    .plain_http
                    .lock()
                    .expect("scheme cache lock")
                    .get(reference.domain())
                    .copied()
                    .unwrap_or(false);
                check_realm(realm, registry_plain, |host| self.may_use_http(host)).map_err(
                    |reason| {
                        Self::registry_error(
                            reference,
                            format!("refusing its token service {realm:?}: {reason}"),
                        )
                    },
                )?;
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", reference.repository()));
                let mut url = format!("{realm}?scope={}", percent_encode(&scope));
                if let Some(service) = params.get("service") {
                    url.push_str(&format!("&service={}", percent_encode(service)));
                }
                let (agent, client_cert) = self.agent(reference)?;
                let mut request = agent.get(&url);
                if let Some(c) = &creds {
                    request = request.header("Authorization", &basic_header(c));
                }
                let mut response = request.call().map_err(|e| {
                    self.transport_error(
                        reference,
                        &format!("its token service {realm}"),
                        client_cert.as_ref(),
                        &e,
                    )
                })?;
                if !response.status().is_success() {
                    return Err(Self::registry_error(
                        reference,
                        format!(
                            "its token service refused access to {} (HTTP {}): check the credentials",
                            reference.repository(),
                            response.status()
                        ),
                    ));
                }
                #[derive(serde::Deserialize)]
                struct TokenReply {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| {
                        Self::registry_error(reference, format!("reading its token: {e}"))
                    })?;
                let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
                    Self::registry_error(
                        reference,
                        format!("its token service answered nonsense: {e}"),
                    )
                })?;
                let token = reply.token.or(reply.access_token).ok_or_else(|| {
                    Self::registry_error(reference, "its token service sent no token")
                })?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(Self::registry_error(
                reference,
                format!("it asks for unsupported authentication: {challenge:?}"),
            )),
        }
    }

    fn read_document(
        &self,
        reference: &ImageReference,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let mut response = self.get(reference, path, accept, None)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_to_vec()
            .map_err(|e| Self::registry_error(reference, format!("reading {path}: {e}")))?;
        if status == 404 {
            return Err(Self::registry_error(
                reference,
                format!("{} not found: {}", reference, registry_message(&body)),
            ));
        }
        if !status.is_success() {
            return Err(Self::registry_error(
                reference,
                format!(
                    "GET {path} failed with HTTP {status}: {}",
                    registry_message(&body)
                ),
            ));
        }
        Ok((body, content_type))
    }

    /// The digest of the manifest (or index) the reference points at now.
    pub fn resolve(&self, reference: &ImageReference) -> Result<Digest> {
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        let (bytes, _) = self.read_document(
            reference,
            &format!("manifests/{target}"),
            Some(media::ACCEPT_MANIFESTS),
        )?;
        Ok(Digest::of(&bytes))
    }

    /// Fetches the image's manifest, config and layers into `blobs`.
    pub fn fetch(
        &self,
        reference: &ImageReference,
        platform: &Platform,
        blobs: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<FetchedImage> {
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        let (mut bytes, mut content_type) = self.read_document(
            reference,
            &format!("manifests/{target}"),
            Some(media::ACCEPT_MANIFESTS),
        )?;
        let mut manifest_digest = Digest::of(&bytes);
        if let Some(pinned) = reference.digest()
            && pinned != manifest_digest.to_string()
        {
            return Err(OciError::DigestMismatch {
                what: format!("manifest of {reference}"),
                expected: pinned
                    .parse()
                    .map_err(|e: crate::digest::DigestParseError| {
                        OciError::Source(e.to_string())
                    })?,
                actual: manifest_digest,
            });
        }
        if is_index(&bytes, content_type.as_deref()) {
            let chosen = select_platform(&bytes, platform, &reference.to_string())?;
            (bytes, content_type) = self.read_document(
                reference,
                &format!("manifests/{}", chosen.digest),
                Some(media::ACCEPT_MANIFESTS),
            )?;
            verify_bytes(
                &bytes,
                &chosen,
                &format!("manifest of {reference} for {platform}"),
            )?;
            manifest_digest = chosen.digest;
        }
        let _ = content_type;
        let manifest = parse_manifest(&bytes, &format!("manifest of {reference}"))?;
        let config_what = format!("image config of {reference}");
        if !blobs.has(&manifest.config) {
            let (config_bytes, _) = self.read_document(
                reference,
                &format!("blobs/{}", manifest.config.digest),
                None,
            )?;
            blobs.put_document(&manifest.config, &config_what, &config_bytes)?;
        }
        let config_bytes = blobs.read_document(&manifest.config, &config_what)?;
        let config = parse_config(&config_bytes, &manifest, &config_what)?;

        self.download_layers(reference, &manifest.layers, blobs, progress)?;
        let layers = manifest
            .layers
            .iter()
            .map(|d| Layer {
                descriptor: d.clone(),
                location: LayerLocation::File(blobs.path(&d.digest)),
            })
            .collect();
        Ok(FetchedImage {
            manifest_digest: Some(manifest_digest),
            config_digest: manifest.config.digest.clone(),
            compressed_size: manifest.layers.iter().map(|l| l.size).sum(),
            config,
            layers,
            names: Vec::new(),
        })
    }

    fn download_layers(
        &self,
        reference: &ImageReference,
        layers: &[Descriptor],
        blobs: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<()> {
        let queue: Mutex<Vec<&Descriptor>> =
            Mutex::new(layers.iter().filter(|d| !blobs.has(d)).rev().collect());
        let first_error: Mutex<Option<OciError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_DOWNLOADS.min(layers.len()) {
                s.spawn(|| {
                    loop {
                        let Some(desc) = queue.lock().expect("queue lock").pop() else {
                            break;
                        };
                        if first_error.lock().expect("error lock").is_some() {
                            break;
                        }
                        if let Err(e) = self.download_layer(reference, desc, blobs, progress) {
                            first_error.lock().expect("error lock").get_or_insert(e);
                        }
                    }
                });
            }
        });
        match first_error.into_inner().expect("error lock") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn download_layer(
        &self,
        reference: &ImageReference,
        desc: &Descriptor,
        blobs: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<()> {
        let short = &desc.digest.hex()[..12];
        let bar = progress.layer(short, desc.size);
        let what = format!("layer {} of {reference}", desc.digest);
        let path = format!("blobs/{}", desc.digest);
        let result = blobs.ingest_resumable(desc, &what, |offset| {
            let response = self.get(reference, &path, None, (offset > 0).then_some(offset))?;
            let status = response.status();
            if offset > 0 && status == 200 {
                return Ok(None); // the registry cannot resume: start over
            }
            if !(status == 200 || status == 206) {
                let mut response = response;
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .unwrap_or_default();
                return Err(Self::registry_error(
                    reference,
                    format!(
                        "GET {path} failed with HTTP {status}: {}",
                        registry_message(&body)
                    ),
                ));
            }
            bar.advance(offset);
            let reader = response.into_body().into_reader();
            Ok(Some(Box::new(CountingReader {
                inner: reader,
                bar: &*bar,
            }) as Box<dyn Read + '_>))
        });
        bar.finish();
        result.map(|_| ())
    }
}

struct CountingReader<'a, R> {
    inner: R,
    bar: &'a dyn crate::fetch::LayerProgress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.advance(n as u64);
        Ok(n)
    }
}

fn basic_header(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

/// Whether a token challenge's realm may be asked for a token (with the registry's
/// credentials, when there are some): over HTTPS always; over plain HTTP only when the
/// registry itself is reached over plain HTTP and the realm's host may be too (loopback,
/// or listed as insecure). Anything else would send the credentials in clear text, or to
/// no web server at all.
fn check_realm(
    realm: &str,
    registry_plain_http: bool,
    may_use_http: impl Fn(&str) -> bool,
) -> std::result::Result<(), String> {
    let Some((scheme, rest)) = realm.split_once("://") else {
        return Err("it is not an http(s) URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("its URL names no plain host (or carries a user name)".into());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if registry_plain_http && may_use_http(authority) => Ok(()),
        "http" => Err(
            "it is plain HTTP, which would carry the credentials in clear text; a token service over HTTP is used only for a registry itself reached over plain HTTP, with the token service on loopback or on a host listed as an insecure registry"
            .to_string()),
        _ => Err("it is not an http(s) URL".into()),
    }
}

/// Splits `Bearer realm="x",service="y"` into the scheme and its parameters.
fn parse_challenge(challenge: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = challenge
        .trim()
        .split_once(' ')
        .unwrap_or((challenge.trim(), ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (scheme.to_string(), params)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The message of a registry's JSON error body, or the body itself.
fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        return e
            .errors
            .iter()
            .map(|x| {
                format!(
                    "{} ({})",
                    x.message.as_deref().unwrap_or(""),
                    x.code.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_realms_get_credentials_only_over_https_or_a_plain_local_registry() {
        let local = |h: &str| h.starts_with("127.0.0.1") || h.starts_with("localhost");
        assert!(check_realm("https://auth.docker.io/token", false, local).is_ok());
        assert!(check_realm("HTTPS://auth.example.com:8443/t?x=1", false, local).is_ok());
        // A registry reached over HTTPS names a plain-HTTP realm: refused, local or not.
        let err = check_realm("http://evil.example.com/token", false, local).unwrap_err();
        assert!(err.contains("clear text"), "{err}");
        assert!(check_realm("http://127.0.0.1:5001/token", false, local).is_err());
        // A plain-HTTP registry on loopback may use a plain-HTTP realm on loopback only.
        assert!(check_realm("http://127.0.0.1:5001/token", true, local).is_ok());
        assert!(check_realm("http://evil.example.com/token", true, local).is_err());
        for bad in [
            "ftp://x/token",
            "file:///etc/passwd",
            "/token",
            "https://",
            "https://user@evil.example.com/token",
        ] {
            assert!(check_realm(bad, false, local).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges_parse() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
        assert_eq!(
            percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn only_configured_and_loopback_registries_may_use_http() {
        let c = RegistryClient::new(CredentialStore::default(), vec!["reg.lan:5000".into()]);
        assert!(c.may_use_http("127.0.0.1:5000"));
        assert!(c.may_use_http("localhost:5000"));
        assert!(c.may_use_http("reg.lan:5000"));
        assert!(!c.may_use_http("reg.lan:5001"));
        assert!(!c.may_use_http("docker.io"));
    }
}

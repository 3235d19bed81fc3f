//! Who trusts whom: the server's authorized client list, the client's pin of
//! the server certificate (fixed or trust-on-first-use), and the rustls
//! verifiers that enforce them.
//!
//! Both verifiers check only the certificate's fingerprint, never names or
//! dates, but always verify the TLS 1.3 handshake signature: that is what
//! proves the peer holds the key of the certificate it showed.
//!
//! Must not load or make identities: that is [`super::identity`]'s.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::identity::{self, Fingerprint, IdentityError};

/// The file name of the trust-on-first-use store in the config directory.
pub const KNOWN_SERVERS_FILE: &str = "known_servers";

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot record the server certificate in {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "invalid server label {0:?} for the known servers file: it must be non-empty and contain no spaces or '#'"
    )]
    BadHostLabel(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Splits a trust-file line into its fields, dropping a `#` comment. Returns
/// `None` for blank and comment-only lines.
fn fields(line: &str) -> Option<Vec<&str>> {
    let content = line.split_once('#').map_or(line, |(before, _)| before);
    let parts: Vec<&str> = content.split_whitespace().collect();
    (!parts.is_empty()).then_some(parts)
}

/// The fingerprints the server accepts, like ssh's `authorized_keys`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizedClients {
    allowed: HashSet<Fingerprint>,
}

impl AuthorizedClients {
    /// Reads `--authorized-clients FILE`: one `sha256:...` per line, with
    /// optional trailing text (a comment, as in `authorized_keys`), `#`
    /// comment lines and blank lines.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|error| TrustError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the contents of an authorized clients file; `path` only names
    /// it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let mut allowed = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let Some(parts) = fields(line) else { continue };
            // `ssh-keygen -l` style lines (`256 sha256:... comment`, as
            // `rscq fingerprint` prints) start with the key size.
            let first = match parts.as_slice() {
                [bits, fp, ..] if bits.bytes().all(|b| b.is_ascii_digit()) => fp,
                [fp, ..] => fp,
                [] => continue,
            };
            let fingerprint = first
                .parse::<Fingerprint>()
                .map_err(|e| TrustError::Malformed {
                    path: path.to_owned(),
                    line: index + 1,
                    reason: e.to_string(),
                })?;
            allowed.insert(fingerprint);
        }
        Ok(Self { allowed })
    }

    pub fn from_fingerprints(fingerprints: impl IntoIterator<Item = Fingerprint>) -> Self {
        Self {
            allowed: fingerprints.into_iter().collect(),
        }
    }

    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.allowed.contains(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// The fingerprints listed here and not in `newer`.
    pub fn removed_in(&self, newer: &AuthorizedClients) -> Vec<Fingerprint> {
        let mut gone: Vec<Fingerprint> = self.allowed.difference(&newer.allowed).copied().collect();
        gone.sort();
        gone
    }
}

/// The authorized clients a running server checks, replaceable while it
/// runs (`rscq-server` re-reads its file on SIGHUP and when it changes).
/// Clones share the list; [`LiveClients::changed`] wakes at each
/// replacement, so live sessions of a removed client can be ended.
#[derive(Debug, Clone)]
pub struct LiveClients {
    current: Arc<std::sync::RwLock<AuthorizedClients>>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl LiveClients {
    pub fn new(clients: AuthorizedClients) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(clients)),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(fingerprint)
    }

    /// Puts `clients` in place and returns the list it replaced.
    pub fn replace(&self, clients: AuthorizedClients) -> AuthorizedClients {
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
            clients,
        );
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
        old
    }

    /// Completes once `fingerprint` is no longer authorized (at once if it
    /// is not now).
    pub async fn removed(&self, fingerprint: Fingerprint) {
        let mut changes = self.generation.subscribe();
        while self.contains(&fingerprint) {
            if changes.changed().await.is_err() {
                // Unreachable while `self` holds the sender.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl From<AuthorizedClients> for LiveClients {
    fn from(clients: AuthorizedClients) -> Self {
        Self::new(clients)
    }
}

/// How the client decides the server is the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Exactly this certificate (from `--server-cert FILE`).
    Pinned(Fingerprint),
    /// Trust on first use, remembered in `file` under `host_label`
    /// (conventionally `host:port` as the user wrote it).
    KnownServers { file: PathBuf, host_label: String },
}

impl ServerTrust {
    /// Pins the certificate stored in a PEM file.
    pub fn pinned_from_cert_file(path: &Path) -> Result<Self, TrustError> {
        Ok(Self::Pinned(identity::cert_file_fingerprint(path)?))
    }

    /// Trust on first use in `<config dir>/known_servers`.
    pub fn known_servers_default(host_label: &str) -> Result<Self, TrustError> {
        Ok(Self::KnownServers {
            file: identity::default_config_dir()?.join(KNOWN_SERVERS_FILE),
            host_label: host_label.to_owned(),
        })
    }
}

/// A `host fingerprint` entry of the known servers file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownEntry {
    pub line: usize,
    pub fingerprint: Fingerprint,
}

fn check_host_label(host_label: &str) -> Result<(), TrustError> {
    if host_label.is_empty() || host_label.contains(|c: char| c.is_whitespace() || c == '#') {
        return Err(TrustError::BadHostLabel(host_label.to_owned()));
    }
    Ok(())
}

/// Finds the entry for `host_label`; the first one wins, as in ssh. A
/// missing file knows no servers. Malformed lines are errors rather than
/// skipped, so a damaged file cannot silently turn into first use.
pub(crate) fn lookup_known_server(
    file: &Path,
    host_label: &str,
) -> Result<Option<KnownEntry>, TrustError> {
    check_host_label(host_label)?;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(TrustError::Read {
                path: file.to_owned(),
                error,
            });
        }
    };
    for (index, line) in text.lines().enumerate() {
        let Some(parts) = fields(line) else { continue };
        let malformed = |reason: String| TrustError::Malformed {
            path: file.to_owned(),
            line: index + 1,
            reason,
        };
        let [host, fingerprint] = parts[..] else {
            return Err(malformed(
                "expected `host:port sha256:<fingerprint>`".to_owned(),
            ));
        };
        let fingerprint = fingerprint
            .parse::<Fingerprint>()
            .map_err(|e| malformed(e.to_string()))?;
        if host == host_label {
            return Ok(Some(KnownEntry {
                line: index + 1,
                fingerprint,
            }));
        }
    }
    Ok(None)
}

/// Appends `host_label fingerprint` to the known servers file, creating it
/// and its directory when needed.
pub(crate) fn record_known_server(
    file: &Path,
    host_label: &str,
    fingerprint: Fingerprint,
) -> Result<(), TrustError> {
    check_host_label(host_label)?;
    let write_err = |error| TrustError::Write {
        path: file.to_owned(),
        error,
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // One write of one whole line with O_APPEND, so two rscq processes
    // meeting a new server at once cannot interleave their lines.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .map_err(write_err)?;
    let line = format!("{host_label} {fingerprint}\n");
    f.write_all(line.as_bytes()).map_err(write_err)
}

/// What the client expected of the server certificate, fixed before the
/// handshake so the verifier does no file I/O.
#[derive(Debug, Clone)]
pub(crate) enum Expectation {
    Pinned(Fingerprint),
    Known {
        file: PathBuf,
        host_label: String,
        entry: Option<KnownEntry>,
    },
}

impl Expectation {
    pub(crate) fn resolve(trust: &ServerTrust) -> Result<Self, TrustError> {
        Ok(match trust {
            ServerTrust::Pinned(fp) => Self::Pinned(*fp),
            ServerTrust::KnownServers { file, host_label } => Self::Known {
                file: file.clone(),
                host_label: host_label.clone(),
                entry: lookup_known_server(file, host_label)?,
            },
        })
    }

    /// The one certificate the server may present, if that is fixed (not
    /// a first use).
    pub(crate) fn pinned(&self) -> Option<Fingerprint> {
        match self {
            Self::Pinned(fp) => Some(*fp),
            Self::Known { entry, .. } => entry.map(|e| e.fingerprint),
        }
    }

    fn accepts(&self, presented: Fingerprint) -> bool {
        match self {
            Self::Pinned(fp) => *fp == presented,
            Self::Known { entry: None, .. } => true,
            Self::Known {
                entry: Some(entry), ..
            } => entry.fingerprint == presented,
        }
    }
}

/// Client side: accepts the server certificate the [`Expectation`] allows,
/// and records what the server presented so a refusal can be explained
/// precisely (rustls only carries a generic error out of the handshake).
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    expectation: Expectation,
    presented: Arc<Mutex<Option<Fingerprint>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerVerifier {
    pub(crate) fn new(
        expectation: Expectation,
        provider: Arc<CryptoProvider>,
    ) -> (Self, Arc<Mutex<Option<Fingerprint>>>) {
        let presented = Arc::new(Mutex::new(None));
        let verifier = Self {
            expectation,
            presented: presented.clone(),
            provider,
        };
        (verifier, presented)
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity.as_ref());
        *self
            .presented
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(presented);
        if self.expectation.accepts(presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only; this path cannot be reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Server side: client certificates are mandatory and must be listed.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    allowed: LiveClients,
    provider: Arc<CryptoProvider>,
}

impl ClientVerifier {
    pub(crate) fn new(allowed: LiveClients, provider: Arc<CryptoProvider>) -> Self {
        Self { allowed, provider }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity.as_ref());
        if self.allowed.contains(&presented) {
            Ok(ClientCertVerified::assertion())
        } else {
            // The operator needs exactly this line to authorize the client.
            tracing::warn!(fingerprint = %presented, "refused a client not in the authorized clients file");
            // Maps to the TLS alert access_denied, which the client
            // recognises as "not authorized".
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: u8) -> Fingerprint {
        Fingerprint([byte; 32])
    }

    #[test]
    fn authorized_clients_allow_comments_and_blanks() {
        let text = format!(
            "# rscq authorized clients\n\n{}\n  {} alice@laptop  # trailing\n",
            fp(1),
            fp(2)
        );
        let clients = AuthorizedClients::parse(Path::new("auth"), &text).unwrap();
        assert_eq!(clients.len(), 2);
        assert!(clients.contains(&fp(1)));
        assert!(clients.contains(&fp(2)));
        assert!(!clients.contains(&fp(3)));
    }

    #[test]
    fn authorized_clients_take_ssh_keygen_style_lines() {
        let text = format!("256 {} /home/u/.config/rscq/client.pem (ECDSA)\n", fp(7));
        let list = AuthorizedClients::parse(Path::new("c"), &text).expect("parse");
        assert!(list.contains(&fp(7)) && list.len() == 1);
        // A number alone is not a fingerprint.
        assert!(AuthorizedClients::parse(Path::new("c"), "256\n").is_err());
    }

    #[tokio::test]
    async fn live_clients_report_removals() {
        let live = LiveClients::new(AuthorizedClients::from_fingerprints([fp(1), fp(2)]));
        let watcher = live.clone();
        let gone = tokio::spawn(async move { watcher.removed(fp(2)).await });
        // Replacing with a list that still holds 2 does not end its wait.
        let old = live.replace(AuthorizedClients::from_fingerprints([fp(2)]));
        assert_eq!(
            old.removed_in(&AuthorizedClients::from_fingerprints([fp(2)])),
            vec![fp(1)]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!gone.is_finished());
        live.replace(AuthorizedClients::from_fingerprints([fp(1)]));
        tokio::time::timeout(std::time::Duration::from_secs(5), gone)
            .await
            .expect("woken")
            .expect("task");
        assert!(live.contains(&fp(1)) && !live.contains(&fp(2)));
    }

    #[test]
    fn malformed_authorized_line_names_file_and_line() {
        let text = format!("{}\n# ok\nssh-ed25519 AAAA bob\n", fp(1));
        let err = AuthorizedClients::parse(Path::new("/etc/rscq/clients"), &text).unwrap_err();
        match &err {
            TrustError::Malformed { line, .. } => assert_eq!(*line, 3),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string().starts_with("/etc/rscq/clients:3: "),
            "{err}"
        );
    }

    #[test]
    fn authorized_clients_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("clients");
        let err = AuthorizedClients::load(&missing).unwrap_err().to_string();
        assert!(err.contains("clients"), "{err}");
        std::fs::write(&missing, "sha256:00\n").unwrap();
        let err = AuthorizedClients::load(&missing).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:1:", missing.display())), "{err}");
    }

    #[test]
    fn known_servers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_servers");
        assert_eq!(lookup_known_server(&file, "a:1").unwrap(), None);
        record_known_server(&file, "a:1", fp(1)).unwrap();
        record_known_server(&file, "b:2", fp(2)).unwrap();
        record_known_server(&file, "a:1", fp(3)).unwrap();
        let a = lookup_known_server(&file, "a:1").unwrap().unwrap();
        assert_eq!((a.line, a.fingerprint), (1, fp(1)));
        let b = lookup_known_server(&file, "b:2").unwrap().unwrap();
        assert_eq!((b.line, b.fingerprint), (2, fp(2)));
        assert_eq!(lookup_known_server(&file, "c:3").unwrap(), None);
        assert!(record_known_server(&file, "bad label", fp(1)).is_err());
    }

    #[test]
    fn malformed_known_servers_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_servers");
        std::fs::write(&file, format!("# c\na:1 {}\nb:2\n", fp(1))).unwrap();
        let err = lookup_known_server(&file, "z:9").unwrap_err().to_string();
        assert!(err.contains(&format!("{}:3:", file.display())), "{err}");
    }
}

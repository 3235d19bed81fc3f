//! TLS identities: self-signed certificates, their PEM files and fingerprints.
//!
//! Both sides use self-signed ECDSA P-256 certificates and trust each other
//! by the SHA-256 of the whole DER certificate, as ssh does with host keys.
//! Nothing here looks at names or validity dates: the fingerprint is the
//! identity.
//!
//! Must not decide whom to trust: that is [`super::trust`]'s.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The subject name in every server certificate, and the name clients ask for.
pub const SERVER_NAME: &str = "rscq-server";
/// The subject name in every client certificate.
pub const CLIENT_NAME: &str = "rscq-client";

/// File names of a server identity written by `rscq-server --gen-cert DIR`.
pub const SERVER_CERT_FILE: &str = "cert.pem";
pub const SERVER_KEY_FILE: &str = "key.pem";
/// File names of a client identity in the client's config directory.
pub const CLIENT_CERT_FILE: &str = "client.pem";
pub const CLIENT_KEY_FILE: &str = "client.key";

const FINGERPRINT_PREFIX: &str = "sha256:";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: already exists; refusing to overwrite an identity peers may have pinned (remove it first)", .0.display())]
    AlreadyExists(PathBuf),
    #[error("cannot create directory {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read certificate {}: {reason}", path.display())]
    ReadCert { path: PathBuf, reason: String },
    #[error("cannot read private key {}: {reason}", path.display())]
    ReadKey { path: PathBuf, reason: String },
    #[error(
        "no configuration directory: neither $XDG_CONFIG_HOME nor $HOME is set to an absolute path"
    )]
    NoConfigDir,
}

/// SHA-256 of a DER certificate; shown as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FINGERPRINT_PREFIX)?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a fingerprint (expected `sha256:` followed by 64 hex digits): {0:?}")]
pub struct BadFingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadFingerprint(s.to_owned());
        let hex = s
            .strip_prefix(FINGERPRINT_PREFIX)
            .or_else(|| s.strip_prefix("SHA256:"))
            .ok_or_else(bad)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

/// A certificate and its private key, ready for rustls.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

// Never print the key.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// A freshly generated identity together with its PEM text.
struct Generated {
    identity: Identity,
    cert_pem: String,
    key_pem: String,
}

fn generate(name: &str) -> Result<Generated, IdentityError> {
    // rcgen's default key is ECDSA P-256, and its simple certificates carry
    // no basicConstraints, so rustls would accept them as end entities too.
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![name.to_owned()])?;
    let identity = Identity {
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(signing_key.serialize_der()).into(),
    };
    Ok(Generated {
        identity,
        cert_pem: cert.pem(),
        key_pem: signing_key.serialize_pem(),
    })
}

impl Identity {
    /// A new in-memory identity with `name` as its subject alternative name.
    pub fn generate(name: &str) -> Result<Self, IdentityError> {
        Ok(generate(name)?.identity)
    }

    /// Reads a PEM certificate (the first one in the file) and a PEM private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let cert =
            CertificateDer::from_pem_file(cert_path).map_err(|e| IdentityError::ReadCert {
                path: cert_path.to_owned(),
                reason: pem_reason(&e),
            })?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| IdentityError::ReadKey {
            path: key_path.to_owned(),
            reason: pem_reason(&e),
        })?;
        // Catch a swapped or mismatched pair here, with file names, rather
        // than as an opaque handshake failure later.
        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| IdentityError::ReadKey {
                path: key_path.to_owned(),
                reason: e.to_string(),
            })?;
        let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], signing_key);
        certified.keys_match().map_err(|e| IdentityError::ReadKey {
            path: key_path.to_owned(),
            reason: format!(
                "does not belong to the certificate {}: {e}",
                cert_path.display()
            ),
        })?;
        Ok(Self { cert, key })
    }

    /// The fingerprint peers pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(self.cert.as_ref())
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub(crate) fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn pem_reason(err: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match err {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Reads the certificate in `path` and returns its fingerprint (as for
/// `--server-cert FILE`).
pub fn cert_file_fingerprint(path: &Path) -> Result<Fingerprint, IdentityError> {
    let cert = CertificateDer::from_pem_file(path).map_err(|e| IdentityError::ReadCert {
        path: path.to_owned(),
        reason: pem_reason(&e),
    })?;
    Ok(Fingerprint::of_der(cert.as_ref()))
}

fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| IdentityError::CreateDir {
            path: dir.to_owned(),
            error,
        })
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), IdentityError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::AlreadyExists(path.to_owned())
            } else {
                IdentityError::Write {
                    path: path.to_owned(),
                    error,
                }
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| IdentityError::Write {
            path: path.to_owned(),
            error,
        })
}

fn write_pair(
    dir: &Path,
    name: &str,
    cert_file: &str,
    key_file: &str,
) -> Result<Fingerprint, IdentityError> {
    create_dir(dir)?;
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    // Check both first so a half-existing pair is left alone.
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(IdentityError::AlreadyExists(path.clone()));
        }
    }
    let generated = generate(name)?;
    write_new(&key_path, &generated.key_pem, 0o600)?;
    write_new(&cert_path, &generated.cert_pem, 0o644)?;
    Ok(generated.identity.fingerprint())
}

/// `rscq-server --gen-cert DIR`: writes `DIR/cert.pem` and `DIR/key.pem`
/// (mode 0600) and returns the fingerprint to give to clients.
pub fn write_server_identity(dir: &Path) -> Result<Fingerprint, IdentityError> {
    write_pair(dir, SERVER_NAME, SERVER_CERT_FILE, SERVER_KEY_FILE)
}

/// Client keygen: writes `DIR/client.pem` and `DIR/client.key` (mode 0600)
/// and returns the fingerprint to put in the server's authorized clients.
pub fn write_client_identity(dir: &Path) -> Result<Fingerprint, IdentityError> {
    write_pair(dir, CLIENT_NAME, CLIENT_CERT_FILE, CLIENT_KEY_FILE)
}

/// Loads `DIR/client.pem` and `DIR/client.key`.
pub fn load_client_identity(dir: &Path) -> Result<Identity, IdentityError> {
    Identity::load(&dir.join(CLIENT_CERT_FILE), &dir.join(CLIENT_KEY_FILE))
}

/// `rscq`'s configuration directory: `$XDG_CONFIG_HOME/rscq`, else
/// `$HOME/.config/rscq`. Relative values are ignored, as the XDG spec says.
pub fn default_config_dir() -> Result<PathBuf, IdentityError> {
    config_dir_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn config_dir_from(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, IdentityError> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute(xdg) {
        return Ok(xdg.join("rscq"));
    }
    if let Some(home) = absolute(home) {
        return Ok(home.join(".config").join("rscq"));
    }
    Err(IdentityError::NoConfigDir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fingerprint_round_trips_and_is_lowercase() {
        let id = Identity::generate(SERVER_NAME).unwrap();
        let fp = id.fingerprint();
        let text = fp.to_string();
        assert!(text.starts_with("sha256:"));
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(text.to_uppercase().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn bad_fingerprints_are_refused() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
        let multibyte = format!("sha256:{}é", "0".repeat(62));
        assert!(multibyte.parse::<Fingerprint>().is_err());
    }

    #[test]
    fn server_identity_is_written_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let fp = write_server_identity(dir.path()).unwrap();
        let key_mode = std::fs::metadata(dir.path().join(SERVER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let id = Identity::load(
            &dir.path().join(SERVER_CERT_FILE),
            &dir.path().join(SERVER_KEY_FILE),
        )
        .unwrap();
        assert_eq!(id.fingerprint(), fp);
        assert_eq!(
            cert_file_fingerprint(&dir.path().join(SERVER_CERT_FILE)).unwrap(),
            fp
        );
        // A second run must not clobber the identity clients pinned.
        assert!(matches!(
            write_server_identity(dir.path()),
            Err(IdentityError::AlreadyExists(_))
        ));
    }

    #[test]
    fn client_identity_goes_into_a_new_dir() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let fp = write_client_identity(&sub).unwrap();
        assert_eq!(load_client_identity(&sub).unwrap().fingerprint(), fp);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = Identity::load(&missing, &missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let err = cert_file_fingerprint(&garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.pem"), "{err}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_server_identity(a.path()).unwrap();
        write_server_identity(b.path()).unwrap();
        let err = Identity::load(
            &a.path().join(SERVER_CERT_FILE),
            &b.path().join(SERVER_KEY_FILE),
        )
        .unwrap_err();
        assert!(matches!(err, IdentityError::ReadKey { .. }), "{err}");
    }

    #[test]
    fn config_dir_prefers_absolute_xdg() {
        let dir = config_dir_from(Some("/x".into()), Some("/home/u".into())).unwrap();
        assert_eq!(dir, PathBuf::from("/x/rscq"));
        let dir = config_dir_from(Some("rel".into()), Some("/home/u".into())).unwrap();
        assert_eq!(dir, PathBuf::from("/home/u/.config/rscq"));
        assert!(config_dir_from(None, None).is_err());
    }
}

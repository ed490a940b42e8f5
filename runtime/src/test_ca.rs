//! A certificate authority made on the spot, for tests of TLS (feature
//! `test-ca`): it issues certificates for `localhost` and 127.0.0.1 and
//! writes them as the PEM files Hearth's settings name.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
    /// The SHA-256 of the key's SubjectPublicKeyInfo, base64: what
    /// Chromium's `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
}

/// Where [`TestCa::write`] put the CA and a server's certificate and key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Hearth test CA");
        let pem = params.self_signed(&key).expect("the CA certificate").pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's own certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `localhost` and 127.0.0.1, with a new key.
    pub fn issue(&self) -> Issued {
        let key = KeyPair::generate().expect("a server key");
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server parameters");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the server certificate");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            spki_sha256: {
                use base64::Engine as _;
                let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
                let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
                base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
            },
        }
    }

    /// Writes the CA (`ca.pem`) and a newly issued server certificate
    /// (`tls.crt`, `tls.key`) into `dir`, made if need be.
    pub fn write(&self, dir: &Path) -> TlsFiles {
        self.write_issued(dir, &self.issue())
    }

    /// As [`TestCa::write`], with a certificate issued already.
    pub fn write_issued(&self, dir: &Path, issued: &Issued) -> TlsFiles {
        std::fs::create_dir_all(dir).expect("a directory for the certificates");
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.ca, &self.pem).expect("writing ca.pem");
        std::fs::write(&files.cert, &issued.cert).expect("writing tls.crt");
        std::fs::write(&files.key, &issued.key).expect("writing tls.key");
        files
    }
}

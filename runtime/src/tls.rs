//! TLS for every Hearth binary, through rustls with the `ring` provider:
//!
//! - [`ServerTls`]: a server's certificate and key from PEM files, read again
//!   when either file changes, so a renewed certificate (cert-manager,
//!   certbot) takes effect at the next handshake without a restart;
//! - [`client_config`]: what a client trusts, a CA file or else the system's
//!   CAs.
//!
//! Why `ring` named here rather than rustls's process-wide default: each
//! config says which provider it uses, so nothing depends on what another
//! crate in the process installed first.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock, Weak},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ClientConfig, RootCertStore, ServerConfig,
};
use tracing::{info, warn};

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How often a server looks whether its certificate files changed.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// How long a client may take over its TLS handshake before it is dropped.
pub const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's certificate chain and key, from `cert_file` and `key_file`
/// (PEM), kept current while the value lives.
#[derive(Clone)]
pub struct ServerTls {
    current: Arc<Reloading>,
}

#[derive(Debug)]
struct Reloading {
    cert_file: PathBuf,
    key_file: PathBuf,
    loaded: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' modification times when read: a change is a new time.
    stamp: (Option<SystemTime>, Option<SystemTime>),
}

impl ServerTls {
    /// Reads the files now (an error names the file at fault) and, on a
    /// Tokio runtime, starts looking for changes every [`RELOAD_EVERY`]
    /// until the last clone is dropped.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        let loaded = read(cert_file, key_file)?;
        let current = Arc::new(Reloading {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            loaded: RwLock::new(loaded),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(Arc::downgrade(&current)));
        }
        Ok(Self { current })
    }

    /// Reads the files again if either changed since last read. A file that
    /// does not read (a renewal half written, a key that is not the
    /// certificate's) keeps the certificate served now, and the error says
    /// why. Returns whether a new certificate is served.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        self.current.reload_if_changed()
    }

    /// An acceptor offering `alpn` (e.g. `h2`, `http/1.1`), always serving
    /// the current certificate.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

async fn watch(current: Weak<Reloading>) {
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let Some(current) = current.upgrade() else {
            break;
        };
        if let Err(e) = current.reload_if_changed() {
            warn!(error = %format!("{e:#}"), "TLS: keeping the certificate served now");
        }
    }
}

impl Reloading {
    fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        if now == self.loaded.read().expect("tls certificate").stamp {
            return Ok(false);
        }
        let read = read(&self.cert_file, &self.key_file);
        let mut loaded = self.loaded.write().expect("tls certificate");
        match read {
            Ok(new) => {
                *loaded = new;
                info!(file = %self.cert_file.display(), "TLS: serving the renewed certificate");
                Ok(true)
            }
            Err(e) => {
                // Why note the times anyway: one warning per change, not one
                // a second until the files are fixed.
                loaded.stamp = now;
                Err(e)
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.loaded.read().expect("tls certificate").key.clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(cert_file: &Path, key_file: &Path) -> anyhow::Result<Loaded> {
    let stamp = (modified(cert_file), modified(key_file));
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("{}: no PEM private key", key_file.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .with_context(|| format!("{}: not a key rustls can sign with", key_file.display()))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().with_context(|| {
        format!(
            "{} is not the key of the certificate in {}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        stamp,
    })
}

/// Every certificate in a PEM file, in order; at least one.
fn certificates(file: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: cannot read PEM certificates", file.display()))?;
    if chain.is_empty() {
        bail!("{}: holds no certificate", file.display());
    }
    Ok(chain)
}

/// What a client trusts: the CAs in `ca_file` (PEM), or the system's
/// (`SSL_CERT_FILE`, else the platform's store) when `None`.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(file) => {
            for cert in certificates(file)? {
                roots
                    .add(cert)
                    .with_context(|| format!("{}: not a CA certificate", file.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("no system CA certificates found; name a CA file");
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A gRPC channel to `url`, connected at its first call: `http://` is
/// plain, `https://` is TLS (ALPN `h2`) trusting `ca_file` or else the
/// system's CAs, checked against the URL's host.
#[cfg(feature = "grpc")]
pub fn grpc_channel(
    url: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<tonic::transport::Channel> {
    use tonic::transport::Endpoint;

    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not an http(s)://host:port URL"))?;
    let (Some(host), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
        bail!("{url:?} is not an http(s)://host:port URL");
    };
    let host = host.trim_matches(['[', ']']).to_owned();
    let timeout = std::time::Duration::from_secs(5);
    match scheme {
        "http" => {
            if ca_file.is_some() {
                bail!("{url:?}: a CA file is for an https:// URL");
            }
            Ok(Endpoint::from_shared(url.to_owned())?
                .connect_timeout(timeout)
                .connect_lazy())
        }
        "https" => {
            let mut config = (*client_config(ca_file)?).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let tls = TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from(host)
                .with_context(|| format!("{url:?}: not a host name"))?;
            let port = uri.port_u16().unwrap_or(443);
            let connector = tower::service_fn(move |uri: http::Uri| {
                let (tls, name) = (tls.clone(), name.clone());
                async move {
                    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                    let _ = tcp.set_nodelay(true);
                    let conn = tls.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(conn))
                }
            });
            // Why `http://` to tonic: TLS is the connector's, not tonic's.
            let plain = url.replacen("https://", "http://", 1);
            Ok(Endpoint::from_shared(plain)?
                .connect_timeout(timeout)
                .connect_with_connector_lazy(connector))
        }
        _ => bail!("{url:?} is not an http(s)://host:port URL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_ca::TestCa;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hearth-tls-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn served(tls: &ServerTls) -> Vec<u8> {
        tls.current.loaded.read().unwrap().key.cert[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_changed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = dir();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let first = TestCa::new().issue();
        std::fs::write(&cert, &first.cert).unwrap();
        std::fs::write(&key, &first.key).unwrap();
        let tls = ServerTls::load(&cert, &key).unwrap();
        assert_eq!(served(&tls), der(&first.cert));
        assert!(!tls.reload_if_changed().unwrap(), "nothing changed");

        let second = TestCa::new().issue();
        std::fs::write(&cert, &second.cert).unwrap();
        std::fs::write(&key, &second.key).unwrap();
        // Why set the time: two writes within the file system's clock tick
        // could leave the modification time as it was.
        let later = SystemTime::now() + Duration::from_secs(5);
        for f in [&cert, &key] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        assert!(tls.reload_if_changed().unwrap());
        assert_eq!(served(&tls), der(&second.cert));

        // A key that is not the certificate's: refused, the second stays.
        std::fs::write(&key, &first.key).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&key)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        let e = format!("{:#}", tls.reload_if_changed().unwrap_err());
        assert!(e.contains("is not the key of the certificate"), "{e}");
        assert_eq!(served(&tls), der(&second.cert));
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = dir();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let e = format!("{:#}", ServerTls::load(&cert, &key).err().unwrap());
        assert!(e.contains("tls.crt"), "{e}");
        std::fs::write(&cert, "").unwrap();
        let e = format!("{:#}", ServerTls::load(&cert, &key).err().unwrap());
        assert!(e.contains("tls.crt: holds no certificate"), "{e}");
        let e = format!("{:#}", client_config(Some(&key)).unwrap_err());
        assert!(e.contains("tls.key"), "{e}");
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_completes_a_handshake_and_another_does_not() {
        let dir = dir();
        let files = TestCa::new().write(&dir);
        let acceptor = ServerTls::load(&files.cert, &files.key)
            .unwrap()
            .acceptor(&[b"h2"])
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let trusting = TlsConnector::from(client_config(Some(&files.ca)).unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = trusting.connect(name.clone(), tcp).await.unwrap();
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            None,
            "the client asked none"
        );

        let other = TestCa::new().write(&dir.join("other"));
        let stranger = TlsConnector::from(client_config(Some(&other.ca)).unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(stranger.connect(name, tcp).await.is_err());
    }
}

//! HTTPS for the API: rustls from PEM files, behind axum's [`Listener`], so plain and TLS
//! listeners are served by the same `axum::serve` (graceful shutdown, connection info).
//!
//! Handshakes run on tasks of their own, each bounded by [`HANDSHAKE_TIMEOUT`], so a client
//! that connects and says nothing holds up no one else; failed handshakes are logged at
//! debug level and dropped.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use lifeboat_core::service_config::TlsFiles;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Completed handshakes waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{} holds no certificate in PEM form", .0.display())]
    NoCertificate(PathBuf),
    #[error("the certificate in {} and the key in {} do not make a server identity: {message}", cert.display(), key.display())]
    Invalid {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// A rustls server configuration from `files` (HTTP/1.1 and HTTP/2 offered).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |what, path: &Path, source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|source| read("certificate file", &files.cert_file, source))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| read("certificate file", &files.cert_file, source))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate(files.cert_file.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|source| read("key file", &files.key_file, source))?;
    let invalid = |message: String| TlsError::Invalid {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        message,
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| invalid(error.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .map_err(|error| invalid(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Write a new self-signed certificate for `localhost` and `127.0.0.1` and its key (0600)
/// into `directory`, for the demo and tests: a client trusts it by taking the certificate
/// file as its CA file.
pub fn write_self_signed(directory: &Path) -> Result<TlsFiles, SelfSignedError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let files = TlsFiles {
        cert_file: directory.join("lifeboat-cert.pem"),
        key_file: directory.join("lifeboat-key.pem"),
    };
    std::fs::write(&files.cert_file, certified.cert.pem())?;
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&files.key_file)?;
    key_file.write_all(certified.key_pair.serialize_pem().as_bytes())?;
    Ok(files)
}

#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write the certificate or its key: {0}")]
    Write(#[from] io::Error),
}

/// A TCP listener whose connections are TLS sessions, for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local_addr: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::AbortHandle,
}

impl TlsListener {
    /// Serve TLS with `config` on `listener`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait, as axum does.
                        tracing::error!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(session)) => {
                            let _ = sender.send((session, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local_addr,
            accepted,
            acceptor: task.abort_handle(),
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The acceptor task ends only when aborted, i.e. with this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// The API's listener: plain HTTP, or HTTPS with an optional internal plain listener on
/// loopback for an agent running in the same process (it needs no certificate that names
/// `127.0.0.1`, and its token never leaves the host).
#[derive(Debug)]
pub enum ApiListener {
    Plain(TcpListener),
    Tls {
        tls: TlsListener,
        internal: Option<TcpListener>,
    },
}

/// Why the controller will not listen where it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to serve plain HTTP on {0}, a non-loopback address: agent tokens and logins would cross the network in the clear. Set [controller] tls_cert_file and tls_key_file, or pass --insecure-http if this network is trusted"
    )]
    PlainOnNetwork(SocketAddr),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
}

impl ApiListener {
    /// Bind `address`, with TLS when `tls` is given; with `internal_loopback` and TLS, also
    /// a plain listener on `127.0.0.1` (any port) for an in-process agent. Plain HTTP on a
    /// non-loopback address is refused unless `insecure_http`.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<&TlsFiles>,
        insecure_http: bool,
        internal_loopback: bool,
    ) -> Result<ApiListener, ListenError> {
        if tls.is_none() && !address.ip().is_loopback() && !insecure_http {
            return Err(ListenError::PlainOnNetwork(address));
        }
        let config = tls.map(server_config).transpose()?;
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| ListenError::Bind { address, source })
        };
        let listener = bind(address).await?;
        Ok(match config {
            None => ApiListener::Plain(listener),
            Some(config) => {
                let internal = if internal_loopback {
                    Some(bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?)
                } else {
                    None
                };
                ApiListener::Tls {
                    tls: TlsListener::new(listener, config)
                        .map_err(|source| ListenError::Bind { address, source })?,
                    internal,
                }
            }
        })
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        match self {
            ApiListener::Plain(_) => "http",
            ApiListener::Tls { .. } => "https",
        }
    }

    /// The address it listens on (the port the system chose for `:0`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Listener::local_addr(self)
    }

    /// Where an agent in this process should connect: the plain listener, or the internal
    /// one beside TLS.
    pub fn in_process_url(&self) -> io::Result<String> {
        match self {
            ApiListener::Plain(listener) => Ok(format!("http://{}", listener.local_addr()?)),
            ApiListener::Tls {
                internal: Some(internal),
                ..
            } => Ok(format!("http://{}", internal.local_addr()?)),
            ApiListener::Tls { internal: None, .. } => Err(io::Error::other(
                "no internal listener: bind with internal_loopback for an in-process agent",
            )),
        }
    }
}

impl From<TcpListener> for ApiListener {
    fn from(listener: TcpListener) -> ApiListener {
        ApiListener::Plain(listener)
    }
}

type Stream = tokio_util::either::Either<TcpStream, TlsStream<TcpStream>>;

impl Listener for ApiListener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_util::either::Either::{Left, Right};
        match self {
            ApiListener::Plain(listener) => {
                let (stream, peer) = Listener::accept(listener).await;
                (Left(stream), peer)
            }
            ApiListener::Tls {
                tls,
                internal: None,
            } => {
                let (stream, peer) = tls.accept().await;
                (Right(stream), peer)
            }
            // Both accepts are cancel-safe: the one that loses the race loses nothing.
            ApiListener::Tls {
                tls,
                internal: Some(internal),
            } => tokio::select! {
                (stream, peer) = tls.accept() => (Right(stream), peer),
                (stream, peer) = Listener::accept(internal) => (Left(stream), peer),
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match self {
            ApiListener::Plain(listener) => listener.local_addr(),
            ApiListener::Tls { tls, .. } => Ok(tls.local_addr),
        }
    }
}

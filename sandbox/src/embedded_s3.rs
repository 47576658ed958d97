//! An S3-compatible server inside this process (s3s + s3s-fs over a directory), so that
//! `lifeboat demo` needs nothing installed.
//!
//! s3s-fs stores each bucket as a directory under the root and each object as a file; it keeps
//! multipart parts and metadata as hidden files in the root itself. It does not implement
//! ListMultipartUploads (the request is answered with `NotImplemented`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// How long open connections may take to finish once the server stops.
const GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// An S3 server embedded in this process, serving one directory with SigV4 auth for one key pair.
///
/// Dropping it stops accepting connections at once and lets open ones finish in the background.
#[derive(Debug)]
pub struct EmbeddedRegion {
    listen_address: SocketAddr,
    bucket: String,
    /// Sending, or dropping, tells the serving task to stop.
    shutdown_sender: Option<oneshot::Sender<()>>,
    serve_task: Option<JoinHandle<()>>,
}

impl EmbeddedRegion {
    /// Serves s3s-fs rooted at `root` on a free port of 127.0.0.1, accepting only requests signed
    /// with the given key pair, and creates `root/<bucket>` so the bucket exists.
    pub async fn start(
        root: &Path,
        access_key_id: &str,
        secret_access_key: &str,
        bucket: &str,
    ) -> anyhow::Result<Self> {
        ensure!(
            s3s::path::check_bucket_name(bucket),
            "use {bucket:?} as a bucket name: S3 bucket names are 3-63 lowercase letters, digits, dots and hyphens"
        );
        let bucket_directory = root.join(bucket);
        tokio::fs::create_dir_all(&bucket_directory)
            .await
            .with_context(|| format!("create bucket directory {}", bucket_directory.display()))?;
        let root_directory = root.to_path_buf();
        let file_system = tokio::task::spawn_blocking(move || {
            FileSystem::new(&root_directory).map_err(|error| {
                anyhow!(
                    "open s3s-fs storage at {}: {error:?}",
                    root_directory.display()
                )
            })
        })
        .await
        .context("join the task that opens s3s-fs storage")??;

        let mut service_builder = S3ServiceBuilder::new(file_system);
        service_builder.set_auth(SimpleAuth::from_single(access_key_id, secret_access_key));
        let service = service_builder.build();

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the embedded S3 server to 127.0.0.1")?;
        let listen_address = listener
            .local_addr()
            .context("read the address of the embedded S3 server")?;
        let (shutdown_sender, shutdown_receiver) = oneshot::channel();
        let serve_task = tokio::spawn(serve_until_shutdown(listener, service, shutdown_receiver));
        tracing::info!(
            endpoint = %format!("http://{listen_address}"),
            root = %root.display(),
            bucket,
            "embedded s3 region is serving"
        );
        Ok(Self {
            listen_address,
            bucket: bucket.to_owned(),
            shutdown_sender: Some(shutdown_sender),
            serve_task: Some(serve_task),
        })
    }

    /// `http://127.0.0.1:<port>`, for a path-style S3 client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.listen_address)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stops accepting connections and waits (up to 5 s) for open ones to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown_sender) = self.shutdown_sender.take() {
            // An error only means the task has already ended.
            let _ = shutdown_sender.send(());
        }
        if let Some(serve_task) = self.serve_task.take()
            && let Err(error) = serve_task.await
        {
            tracing::warn!(%error, "embedded s3 serving task failed");
        }
    }
}

impl Drop for EmbeddedRegion {
    fn drop(&mut self) {
        // Dropping the sender wakes the serving task, which closes the listener and drains the
        // open connections in the background.
        self.shutdown_sender.take();
    }
}

/// Accepts connections until told to stop, then shuts them down gracefully.
async fn serve_until_shutdown(
    listener: TcpListener,
    service: S3Service,
    mut shutdown_receiver: oneshot::Receiver<()>,
) {
    let connection_builder = ConnectionBuilder::new(TokioExecutor::new());
    let graceful_shutdown = GracefulShutdown::new();
    let mut connection_tasks = JoinSet::new();
    loop {
        tokio::select! {
            // Fires on an explicit stop and when the region is dropped.
            _ = &mut shutdown_receiver => break,
            accepted = listener.accept() => {
                let socket = match accepted {
                    Ok((socket, _peer_address)) => socket,
                    Err(error) => {
                        tracing::warn!(%error, "embedded s3 server failed to accept a connection");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                let connection = connection_builder
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let watched_connection = graceful_shutdown.watch(connection);
                connection_tasks.spawn(async move {
                    if let Err(error) = watched_connection.await {
                        tracing::debug!(%error, "embedded s3 connection ended with an error");
                    }
                });
            }
            // Reap finished connections so the set does not grow for the life of the server.
            Some(_) = connection_tasks.join_next(), if !connection_tasks.is_empty() => {}
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful_shutdown.shutdown() => {
            tracing::debug!("embedded s3 server drained its connections");
        }
        () = tokio::time::sleep(GRACEFUL_SHUTDOWN_TIMEOUT) => {
            tracing::warn!(
                timeout_seconds = GRACEFUL_SHUTDOWN_TIMEOUT.as_secs(),
                "embedded s3 connections did not finish in time, aborting them"
            );
        }
    }
    connection_tasks.shutdown().await;
    tracing::info!("embedded s3 region stopped");
}

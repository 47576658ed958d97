//! A fault-injecting wrapper: a TCP proxy in front of a real region that forwards traffic
//! until told to stall, then holds every connection open without passing a byte, as a
//! wedged server or a black-holed network would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct StallProxy {
    pub endpoint: String,
    stalled: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Proxy `target` (`http://host:port`) on a free loopback port.
    pub async fn start(target: &str) -> StallProxy {
        let target_address = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let stalled = Arc::new(AtomicBool::new(false));
        let task_stalled = stalled.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target_address = target_address.clone();
                let stalled = task_stalled.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target_address).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, stalled.clone()),
                        pump(server_read, client_write, stalled)
                    );
                });
            }
        });
        StallProxy {
            endpoint,
            stalled,
            task,
        }
    }

    /// From now on, no byte passes in either direction; connections stay open.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if stalled.load(Ordering::SeqCst) {
            // Hold both ends open and silent for longer than any test runs.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

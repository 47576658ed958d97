//! Guards of the reads whose length the server decides: paged listings and small objects.
//!
//! A listing follows the server's continuation token until the server says it is done. A
//! server that hands back a token it already gave (a bug, or a hostile bucket) would keep
//! the loop going for ever; [`PageMarkers`] notices. A manifest is read whole into memory;
//! [`read_at_most`] stops at the limit even when the server did not say the length.

use std::collections::HashSet;
use std::hash::Hash;

use aws_sdk_s3::primitives::{ByteStream, ByteStreamError};
use bytes::{Bytes, BytesMut};

/// The continuation markers a listing has followed so far.
#[derive(Debug)]
pub(super) struct PageMarkers<Marker> {
    followed: HashSet<Marker>,
}

impl<Marker: Eq + Hash> PageMarkers<Marker> {
    pub(super) fn new() -> PageMarkers<Marker> {
        PageMarkers {
            followed: HashSet::new(),
        }
    }

    /// Whether `marker` is new: `false` means the server has given it before, and
    /// following it again would repeat pages (perhaps for ever).
    pub(super) fn first_time(&mut self, marker: Marker) -> bool {
        self.followed.insert(marker)
    }
}

/// Why [`read_at_most`] gave up.
#[derive(Debug)]
pub(super) enum BoundedReadError {
    /// The body goes on past the limit.
    TooLarge,
    /// The body could not be read.
    Read(ByteStreamError),
}

/// All of `body`, or [`BoundedReadError::TooLarge`] as soon as it passes `max_bytes`:
/// never more than `max_bytes` plus one chunk in memory.
pub(super) async fn read_at_most(
    mut body: ByteStream,
    max_bytes: u64,
) -> Result<Bytes, BoundedReadError> {
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(BoundedReadError::Read)?;
        let total_bytes = collected.len() as u64 + chunk.len() as u64;
        if total_bytes > max_bytes {
            return Err(BoundedReadError::TooLarge);
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_given_twice_is_noticed() {
        let mut markers = PageMarkers::new();
        assert!(markers.first_time("page-2".to_owned()));
        assert!(markers.first_time("page-3".to_owned()));
        assert!(!markers.first_time("page-2".to_owned()));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_and_one_within_is_read_whole() {
        let body = ByteStream::from(vec![7_u8; 100]);
        assert!(matches!(
            read_at_most(body, 99).await,
            Err(BoundedReadError::TooLarge)
        ));
        let body = ByteStream::from(vec![7_u8; 100]);
        let read = read_at_most(body, 100).await.expect("within the limit");
        assert_eq!(read.len(), 100);
    }

    /// What a server that misbehaves does with the S3 client: a canned HTTP server on
    /// loopback, so the real `Region` methods (SDK, parsing, loop) run against it.
    mod through_a_region {
        use std::future::Future;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};

        use crate::config::RegionConfig;
        use crate::ids::RegionName;
        use crate::region::Region;

        /// Serve every connection with `respond` after reading the request's head;
        /// returns the endpoint and how many requests came.
        async fn serve<Respond, Responding>(respond: Respond) -> (String, Arc<AtomicUsize>)
        where
            Respond: Fn(TcpStream, usize) -> Responding + Send + Sync + 'static,
            Responding: Future<Output = ()> + Send + 'static,
        {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let endpoint = format!("http://{}", listener.local_addr().expect("address"));
            let requests = Arc::new(AtomicUsize::new(0));
            let counted = requests.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut head = Vec::new();
                    let mut byte = [0_u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    let number = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::spawn(respond(stream, number));
                }
            });
            (endpoint, requests)
        }

        fn region_at(endpoint: &str) -> Region {
            Region::new(&RegionConfig {
                name: RegionName::parse("us").expect("region name"),
                endpoint: endpoint.to_owned(),
                bucket: "lifeboat".to_owned(),
                s3_region: "us-east-1".to_owned(),
                access_key_id: "lifeboat-test".to_owned(),
                secret_access_key: secrecy::SecretString::from("test-secret"),
                manager: None,
                object_lock: None,
                require_lock: false,
                path_style: true,
                priority: 0,
            })
        }

        /// A page of ListObjectsV2 that says more follows, always after the same token,
        /// up to the 100th request (so a loop that never notices still ends).
        async fn same_token_again(mut stream: TcpStream, number: usize) {
            let truncated = number < 100;
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                 <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Name>lifeboat</Name><Prefix>tenants/</Prefix><KeyCount>1</KeyCount>\
                 <MaxKeys>1000</MaxKeys><IsTruncated>{truncated}</IsTruncated>\
                 <NextContinuationToken>page-2</NextContinuationToken>\
                 <Contents><Key>tenants/acme/{number}</Key></Contents></ListBucketResult>"
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }

        #[tokio::test]
        async fn a_listing_stops_when_the_server_repeats_its_continuation_token() {
            let (endpoint, requests) = serve(same_token_again).await;
            let region = region_at(&endpoint);
            let error = tokio::time::timeout(Duration::from_secs(30), region.list_keys("tenants/"))
                .await
                .expect("the listing ends")
                .expect_err("a repeated token is an error, not the whole listing");
            assert_eq!(
                error.to_string(),
                format!(
                    "region us: list objects tenants/: {}",
                    crate::region::REPEATED_MARKER
                )
            );
            // The first page, then the page after `page-2` once: its token is `page-2` again.
            assert_eq!(requests.load(Ordering::SeqCst), 2);
        }

        /// A 200 without Content-Length whose chunked body goes on for 16 MiB.
        async fn endless_body(mut stream: TcpStream, _number: usize) {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
            for _ in 0..16 * 1024 {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            let _ = stream.shutdown().await;
        }

        #[tokio::test]
        async fn a_small_object_without_a_length_is_read_only_up_to_the_limit() {
            let (endpoint, _requests) = serve(endless_body).await;
            let region = region_at(&endpoint);
            let error = tokio::time::timeout(
                Duration::from_secs(30),
                region.get_small_object("tenants/acme/x.manifest.json", 64 * 1024),
            )
            .await
            .expect("the read ends")
            .expect_err("past the limit");
            assert_eq!(
                error.to_string(),
                "region us: get object tenants/acme/x.manifest.json: larger than the 65536 bytes a manifest may have"
            );
        }
    }
}

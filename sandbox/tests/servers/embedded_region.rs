//! Embedded s3s-fs region: the S3 calls lifeboat makes work against it, with real SigV4 auth.

use std::net::TcpStream;
use std::time::Instant;

use lifeboat_sandbox::EmbeddedRegion;

use crate::s3_round_trip::{
    ACCESS_KEY_ID, FIRST_PART_SIZE_BYTES, SECRET_ACCESS_KEY, assert_listed_with_its_size,
    list_objects, md5_hex, multipart_e_tag, read_object, s3_client, upload_two_part_object,
};

fn endpoint_accepts_connections(endpoint: &str) -> bool {
    TcpStream::connect(endpoint.trim_start_matches("http://")).is_ok()
}

#[tokio::test]
async fn embedded_region_round_trips_a_multipart_object() {
    let storage_directory = tempfile::tempdir().expect("create a storage directory");
    let started_at = Instant::now();
    let region = EmbeddedRegion::start(
        storage_directory.path(),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "lifeboat-demo",
    )
    .await
    .expect("start the embedded region");
    println!("embedded region start took {:?}", started_at.elapsed());
    assert_eq!(region.bucket(), "lifeboat-demo");
    assert!(storage_directory.path().join("lifeboat-demo").is_dir());
    let client = s3_client(&region.endpoint(), ACCESS_KEY_ID, SECRET_ACCESS_KEY);

    client
        .head_bucket()
        .bucket(region.bucket())
        .send()
        .await
        .expect("the bucket exists from the start");

    let key = "backups/one/base.tar.zst.age";
    let uploaded = upload_two_part_object(&client, region.bucket(), key).await;
    println!(
        "s3s-fs part ETags {:?}, complete ETag {:?}",
        uploaded.part_e_tags, uploaded.complete_e_tag
    );
    assert_eq!(
        uploaded.part_e_tags[0].trim_matches('"'),
        md5_hex(&uploaded.content[..FIRST_PART_SIZE_BYTES])
    );
    assert_eq!(
        uploaded
            .complete_e_tag
            .as_deref()
            .map(|e_tag| e_tag.trim_matches('"').to_owned()),
        Some(multipart_e_tag(&uploaded.part_e_tags))
    );
    assert_eq!(
        read_object(&client, region.bucket(), key).await,
        uploaded.content
    );
    let stored_file = storage_directory.path().join("lifeboat-demo").join(key);
    assert_eq!(
        std::fs::read(&stored_file).expect("read the stored file"),
        uploaded.content
    );

    let head = assert_listed_with_its_size(&client, region.bucket(), key).await;
    println!("s3s-fs HeadObject ETag {:?}", head.e_tag());

    // Aborting an upload removes its parts; ListMultipartUploads is not implemented by s3s-fs.
    let pending = client
        .create_multipart_upload()
        .bucket(region.bucket())
        .key("backups/two/pending")
        .send()
        .await
        .expect("create a pending upload");
    let pending_upload_id = pending.upload_id().expect("upload id").to_owned();
    client
        .upload_part()
        .bucket(region.bucket())
        .key("backups/two/pending")
        .upload_id(&pending_upload_id)
        .part_number(1)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"partial"))
        .send()
        .await
        .expect("upload a part of the pending upload");
    let list_uploads_status = client
        .list_multipart_uploads()
        .bucket(region.bucket())
        .send()
        .await
        .expect_err("s3s-fs 0.14 does not implement ListMultipartUploads")
        .raw_response()
        .map(|response| response.status().as_u16());
    assert_eq!(list_uploads_status, Some(501));
    client
        .abort_multipart_upload()
        .bucket(region.bucket())
        .key("backups/two/pending")
        .upload_id(&pending_upload_id)
        .send()
        .await
        .expect("abort the pending upload");
    let leftover_part_files: Vec<String> = std::fs::read_dir(storage_directory.path())
        .expect("read the storage directory")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(&pending_upload_id))
        .collect();
    assert!(
        leftover_part_files.is_empty(),
        "abort leaves {leftover_part_files:?}"
    );

    client
        .delete_object()
        .bucket(region.bucket())
        .key(key)
        .send()
        .await
        .expect("delete object");
    assert!(
        list_objects(&client, region.bucket(), "backups/")
            .await
            .is_empty()
    );
    let missing = client
        .head_object()
        .bucket(region.bucket())
        .key(key)
        .send()
        .await;
    let missing_status = missing
        .expect_err("a deleted object is gone")
        .raw_response()
        .map(|response| response.status().as_u16());
    assert_eq!(missing_status, Some(404));

    let endpoint = region.endpoint();
    region.stop().await;
    assert!(
        !endpoint_accepts_connections(&endpoint),
        "a stopped region must not listen"
    );
}

#[tokio::test]
async fn embedded_region_refuses_requests_signed_with_another_secret() {
    let storage_directory = tempfile::tempdir().expect("create a storage directory");
    let region = EmbeddedRegion::start(
        storage_directory.path(),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "lifeboat-demo",
    )
    .await
    .expect("start the embedded region");
    let intruder = s3_client(&region.endpoint(), ACCESS_KEY_ID, "not-the-secret");
    let status = intruder
        .put_object()
        .bucket(region.bucket())
        .key("intrusion")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"nope"))
        .send()
        .await
        .expect_err("a wrong secret must be refused")
        .raw_response()
        .map(|response| response.status().as_u16());
    assert_eq!(status, Some(403));
    assert!(
        !storage_directory
            .path()
            .join("lifeboat-demo/intrusion")
            .exists()
    );
}

#[tokio::test]
async fn dropping_an_embedded_region_closes_its_port() {
    let storage_directory = tempfile::tempdir().expect("create a storage directory");
    let region = EmbeddedRegion::start(
        storage_directory.path(),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "lifeboat-demo",
    )
    .await
    .expect("start the embedded region");
    let endpoint = region.endpoint();
    assert!(endpoint_accepts_connections(&endpoint));
    drop(region);
    // The serving task notices the drop on its next poll; give it a few turns.
    let mut still_listening = true;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        still_listening = endpoint_accepts_connections(&endpoint);
        if !still_listening {
            break;
        }
    }
    assert!(!still_listening, "a dropped region must stop listening");
}

#[tokio::test]
async fn invalid_bucket_names_are_refused_up_front() {
    let storage_directory = tempfile::tempdir().expect("create a storage directory");
    let error = EmbeddedRegion::start(
        storage_directory.path(),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "../escape",
    )
    .await
    .expect_err("a path is not a bucket name");
    assert!(format!("{error:#}").contains("bucket name"), "{error:#}");
}

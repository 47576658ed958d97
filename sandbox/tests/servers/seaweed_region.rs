//! SeaweedFS region: a multipart object survives a kill and restart, and two regions coexist.

use std::net::TcpStream;
use std::time::Instant;

use lifeboat_sandbox::SeaweedRegion;

use crate::s3_round_trip::{
    ACCESS_KEY_ID, FIRST_PART_SIZE_BYTES, SECRET_ACCESS_KEY, assert_listed_with_its_size,
    list_objects, md5_hex, multipart_e_tag, read_object, s3_client, upload_two_part_object,
};

fn s3_port_accepts_connections(endpoint: &str) -> bool {
    let address = endpoint.trim_start_matches("http://");
    TcpStream::connect(address).is_ok()
}

#[tokio::test]
async fn seaweed_region_keeps_a_multipart_object_across_kill_and_restart() {
    let started_at = Instant::now();
    let mut region = SeaweedRegion::start(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "lifeboat-seaweed")
        .await
        .expect("start a seaweedfs region");
    println!("seaweedfs start took {:?}", started_at.elapsed());
    assert_eq!(region.bucket(), "lifeboat-seaweed");
    assert!(region.endpoint().starts_with("http://127.0.0.1:"));
    let client = s3_client(&region.endpoint(), ACCESS_KEY_ID, SECRET_ACCESS_KEY);

    let key = "backups/one/base.tar.zst.age";
    let uploaded = upload_two_part_object(&client, region.bucket(), key).await;
    println!(
        "seaweedfs part ETags {:?}, complete ETag {:?}",
        uploaded.part_e_tags, uploaded.complete_e_tag
    );
    assert_eq!(
        uploaded.part_e_tags[1].trim_matches('"'),
        md5_hex(&uploaded.content[FIRST_PART_SIZE_BYTES..])
    );
    assert_eq!(
        read_object(&client, region.bucket(), key).await,
        uploaded.content
    );

    let head = assert_listed_with_its_size(&client, region.bucket(), key).await;
    println!(
        "seaweedfs HeadObject ETag {:?}, checksum CRC32 {:?}",
        head.e_tag(),
        head.checksum_crc32()
    );
    assert_eq!(
        head.e_tag().map(|e_tag| e_tag.trim_matches('"').to_owned()),
        Some(multipart_e_tag(&uploaded.part_e_tags)),
        "seaweedfs reports the S3-style multipart ETag"
    );

    // An unfinished upload is listed, then gone once aborted.
    let pending = client
        .create_multipart_upload()
        .bucket(region.bucket())
        .key("backups/two/pending")
        .send()
        .await
        .expect("create a pending upload");
    let pending_upload_id = pending.upload_id().expect("upload id").to_owned();
    let listed_uploads = client
        .list_multipart_uploads()
        .bucket(region.bucket())
        .send()
        .await
        .expect("list multipart uploads");
    let listed_upload_ids: Vec<&str> = listed_uploads
        .uploads()
        .iter()
        .filter_map(|upload| upload.upload_id())
        .collect();
    assert_eq!(listed_upload_ids, vec![pending_upload_id.as_str()]);
    client
        .abort_multipart_upload()
        .bucket(region.bucket())
        .key("backups/two/pending")
        .upload_id(&pending_upload_id)
        .send()
        .await
        .expect("abort the pending upload");
    let listed_after_abort = client
        .list_multipart_uploads()
        .bucket(region.bucket())
        .send()
        .await
        .expect("list multipart uploads after abort");
    assert!(
        listed_after_abort.uploads().is_empty(),
        "{:?}",
        listed_after_abort.uploads()
    );

    region.kill();
    region.kill();
    assert!(!region.is_running());
    assert!(
        !s3_port_accepts_connections(&region.endpoint()),
        "a killed region must not listen"
    );
    let while_dead = client
        .get_object()
        .bucket(region.bucket())
        .key(key)
        .send()
        .await;
    assert!(while_dead.is_err(), "a killed region must not answer");

    let restarted_at = Instant::now();
    region.restart().await.expect("restart the region");
    println!("seaweedfs restart took {:?}", restarted_at.elapsed());
    assert!(region.is_running());
    assert_eq!(
        read_object(&client, region.bucket(), key).await,
        uploaded.content
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

    let directory = region.directory().to_path_buf();
    let endpoint = region.endpoint();
    let s3_port: u16 = endpoint
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("endpoint ends with a port");
    // weed binds a unix socket in /tmp beside each gRPC port (HTTP port + 10000).
    let s3_grpc_socket =
        std::path::PathBuf::from(format!("/tmp/seaweedfs-s3-grpc-{}.sock", s3_port + 10_000));
    assert!(
        s3_grpc_socket.exists(),
        "{} should exist while the region runs",
        s3_grpc_socket.display()
    );
    drop(region);
    assert!(
        !s3_port_accepts_connections(&endpoint),
        "a dropped region must not listen"
    );
    assert!(!directory.exists(), "the region's directory outlives it");
    assert!(
        !s3_grpc_socket.exists(),
        "{} outlives the region",
        s3_grpc_socket.display()
    );
}

#[tokio::test]
async fn two_seaweed_regions_start_side_by_side_and_reject_wrong_keys() {
    let started_at = Instant::now();
    let (first_region, second_region) = tokio::join!(
        SeaweedRegion::start(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "region-one"),
        SeaweedRegion::start(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "region-two"),
    );
    let first_region = first_region.expect("start the first region");
    let second_region = second_region.expect("start the second region");
    println!(
        "two seaweedfs regions started together in {:?}",
        started_at.elapsed()
    );
    assert_ne!(first_region.endpoint(), second_region.endpoint());

    for region in [&first_region, &second_region] {
        let client = s3_client(&region.endpoint(), ACCESS_KEY_ID, SECRET_ACCESS_KEY);
        let buckets = client.list_buckets().send().await.expect("list buckets");
        let bucket_names: Vec<&str> = buckets
            .buckets()
            .iter()
            .filter_map(|bucket| bucket.name())
            .filter(|name| *name != lifeboat_sandbox::seaweed::PROBE_BUCKET)
            .collect();
        assert_eq!(
            bucket_names,
            vec![region.bucket()],
            "each region has only its own bucket (besides the readiness probe's)"
        );

        let intruder = s3_client(&region.endpoint(), ACCESS_KEY_ID, "not-the-secret");
        let refused = intruder
            .list_objects_v2()
            .bucket(region.bucket())
            .send()
            .await;
        let status = refused
            .expect_err("a wrong secret must be refused")
            .raw_response()
            .map(|response| response.status().as_u16());
        assert_eq!(status, Some(403));
    }
}

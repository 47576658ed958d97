//! The S3 client and the multipart round trip that every region test runs, configured the way the
//! project's own client is (path-style, explicit endpoint, checksums only when required).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

pub const ACCESS_KEY_ID: &str = "LIFEBOATTESTKEY";
pub const SECRET_ACCESS_KEY: &str = "lifeboat-test-secret-access-key";

/// The smallest size S3 allows for every part but the last.
pub const FIRST_PART_SIZE_BYTES: usize = 5 * 1024 * 1024;
pub const LAST_PART_SIZE_BYTES: usize = 1;

pub fn s3_client(endpoint: &str, access_key_id: &str, secret_access_key: &str) -> Client {
    let credentials = Credentials::new(
        access_key_id,
        secret_access_key,
        None,
        None,
        "sandbox-tests",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(config)
}

/// Bytes that differ from offset to offset, so that a reordered or shifted part is noticed.
pub fn patterned_bytes(length_bytes: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..length_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// What the server said about a completed multipart upload.
#[derive(Debug)]
pub struct UploadedObject {
    pub content: Vec<u8>,
    pub complete_e_tag: Option<String>,
    pub part_e_tags: Vec<String>,
}

/// Uploads `key` in two parts (5 MiB, then 1 byte) from memory and completes the upload.
pub async fn upload_two_part_object(client: &Client, bucket: &str, key: &str) -> UploadedObject {
    let first_part = patterned_bytes(FIRST_PART_SIZE_BYTES, 1);
    let last_part = patterned_bytes(LAST_PART_SIZE_BYTES, 2);
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("create multipart upload");
    let upload_id = created
        .upload_id()
        .expect("upload id in CreateMultipartUpload")
        .to_owned();

    let mut completed_parts = Vec::new();
    let mut part_e_tags = Vec::new();
    for (part_number, part) in [(1, &first_part), (2, &last_part)] {
        let uploaded = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(Bytes::from(part.clone())))
            .send()
            .await
            .unwrap_or_else(|error| panic!("upload part {part_number}: {error:?}"));
        let e_tag = uploaded.e_tag().expect("ETag of uploaded part").to_owned();
        part_e_tags.push(e_tag.clone());
        completed_parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .e_tag(e_tag)
                .build(),
        );
    }
    let completed = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed_parts))
                .build(),
        )
        .send()
        .await
        .expect("complete multipart upload");

    let mut content = first_part;
    content.extend_from_slice(&last_part);
    UploadedObject {
        content,
        complete_e_tag: completed.e_tag().map(str::to_owned),
        part_e_tags,
    }
}

pub async fn read_object(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("get object {key}: {error:?}"));
    object
        .body
        .collect()
        .await
        .expect("read object body")
        .into_bytes()
        .to_vec()
}

/// Keys and sizes under `prefix`, via ListObjectsV2.
pub async fn list_objects(client: &Client, bucket: &str, prefix: &str) -> Vec<(String, i64)> {
    let listing = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list objects");
    listing
        .contents()
        .iter()
        .map(|object| {
            (
                object.key().expect("listed object has a key").to_owned(),
                object.size().expect("listed object has a size"),
            )
        })
        .collect()
}

/// The hex MD5 S3 reports as the ETag of a multipart object: MD5 of the parts' MD5s, `-<count>`.
pub fn multipart_e_tag(part_e_tags: &[String]) -> String {
    let mut part_digests = Vec::new();
    for part_e_tag in part_e_tags {
        let hex_digest = part_e_tag.trim_matches('"');
        for byte_index in (0..hex_digest.len()).step_by(2) {
            part_digests.push(
                u8::from_str_radix(&hex_digest[byte_index..byte_index + 2], 16)
                    .expect("part ETag is a hex MD5"),
            );
        }
    }
    format!("{}-{}", md5_hex(&part_digests), part_e_tags.len())
}

/// A small MD5 (RFC 1321) so the tests need no extra crate just to check ETags.
pub fn md5_hex(message: &[u8]) -> String {
    const SHIFTS: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let sines: Vec<u32> = (0..64)
        .map(|index: u32| ((f64::from(index) + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut padded = message.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((message.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in padded.chunks(64) {
        let words: Vec<u32> = chunk
            .chunks(4)
            .map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for round in 0..64 {
            let (mixed, word_index) = match round / 16 {
                0 => ((b & c) | (!b & d), round),
                1 => ((d & b) | (!d & c), (5 * round + 1) % 16),
                2 => (b ^ c ^ d, (3 * round + 5) % 16),
                _ => (c ^ (b | !d), (7 * round) % 16),
            };
            let rotated = a
                .wrapping_add(mixed)
                .wrapping_add(sines[round])
                .wrapping_add(words[word_index])
                .rotate_left(SHIFTS[round]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        state = [
            state[0].wrapping_add(a),
            state[1].wrapping_add(b),
            state[2].wrapping_add(c),
            state[3].wrapping_add(d),
        ];
    }
    state
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn md5_matches_the_rfc_examples() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
}

/// The two-part object at `key` is listed under `backups/` with its full size, and HEAD
/// agrees; returns the HEAD answer for server-specific checks.
pub async fn assert_listed_with_its_size(
    client: &Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let expected_size =
        i64::try_from(FIRST_PART_SIZE_BYTES + LAST_PART_SIZE_BYTES).expect("size fits i64");
    assert_eq!(
        list_objects(client, bucket, "backups/").await,
        vec![(key.to_owned(), expected_size)]
    );
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head object");
    assert_eq!(head.content_length(), Some(expected_size));
    head
}

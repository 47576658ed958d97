//! Uploads one file to one S3 region the way lifeboat's backup does, or with one setting
//! changed, so that `bench/upload-server-cpu.sh` can read what each way costs the server.
//!
//! ```sh
//! cargo run --release -p lifeboat-core --example upload_probe -- \
//!     --endpoint http://127.0.0.1:8333 --bucket b --key k --file object.bin \
//!     [--part-bytes 5242880] [--in-flight 2] [--single-put] [--via-region] \
//!     [--checksum crc32|crc32c|crc64nvme|sha256] [--unsigned-payload]
//! ```
//!
//! `--via-region` sends the parts through lifeboat's own [`Region`] (create, parts with
//! at most `--in-flight` in flight, complete), exactly what a backup sends per region;
//! otherwise a client built with the same settings sends them, with the variant asked for.
//! Credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`. Prints the client's
//! wall time and the object's size; the server's CPU is the caller's business.

use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use lifeboat_core::config::RegionConfig;
use lifeboat_core::ids::RegionName;
use lifeboat_core::policy;
use lifeboat_core::region::Region;

type ProbeResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug)]
struct Options {
    endpoint: String,
    bucket: String,
    key: String,
    file: String,
    part_bytes: usize,
    in_flight: usize,
    single_put: bool,
    via_region: bool,
    checksum: Option<ChecksumAlgorithm>,
    unsigned_payload: bool,
}

fn parse_options() -> ProbeResult<Options> {
    let mut options = Options {
        endpoint: String::new(),
        bucket: String::new(),
        key: String::new(),
        file: String::new(),
        part_bytes: usize::try_from(policy::DEFAULT_PART_SIZE_BYTES)?,
        in_flight: policy::UPLOADS_IN_FLIGHT_PER_REGION,
        single_put: false,
        via_region: false,
        checksum: None,
        unsigned_payload: false,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let mut value = || arguments.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoint" => options.endpoint = value()?,
            "--bucket" => options.bucket = value()?,
            "--key" => options.key = value()?,
            "--file" => options.file = value()?,
            "--part-bytes" => options.part_bytes = value()?.parse()?,
            "--in-flight" => options.in_flight = value()?.parse()?,
            "--single-put" => options.single_put = true,
            "--via-region" => options.via_region = true,
            "--unsigned-payload" => options.unsigned_payload = true,
            "--checksum" => {
                options.checksum = Some(match value()?.as_str() {
                    "crc32" => ChecksumAlgorithm::Crc32,
                    "crc32c" => ChecksumAlgorithm::Crc32C,
                    "crc64nvme" => ChecksumAlgorithm::Crc64Nvme,
                    "sha256" => ChecksumAlgorithm::Sha256,
                    other => return Err(format!("unknown checksum {other}").into()),
                });
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if options.endpoint.is_empty() || options.bucket.is_empty() || options.key.is_empty() {
        return Err("--endpoint, --bucket and --key are required".into());
    }
    Ok(options)
}

fn credentials() -> ProbeResult<(String, String)> {
    Ok((
        std::env::var("AWS_ACCESS_KEY_ID")?,
        std::env::var("AWS_SECRET_ACCESS_KEY")?,
    ))
}

/// A client with the settings of `Region::new`, except the variant's checksum setting.
fn client(options: &Options) -> ProbeResult<Client> {
    let (access_key_id, secret_access_key) = credentials()?;
    let calculation = if options.checksum.is_some() {
        RequestChecksumCalculation::WhenSupported
    } else {
        RequestChecksumCalculation::WhenRequired
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&options.endpoint)
        .credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "probe",
        ))
        .force_path_style(true)
        .request_checksum_calculation(calculation)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(config))
}

async fn upload_part(
    client: &Client,
    options: &Options,
    upload_id: &str,
    number: i32,
    body: Bytes,
) -> ProbeResult<CompletedPart> {
    let mut request = client
        .upload_part()
        .bucket(&options.bucket)
        .key(&options.key)
        .upload_id(upload_id)
        .part_number(number)
        .content_length(i64::try_from(body.len())?)
        .set_checksum_algorithm(options.checksum.clone())
        .body(ByteStream::from(body))
        .customize();
    if options.unsigned_payload {
        request = request.disable_payload_signing();
    }
    let output = request.send().await?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(output.e_tag)
        .set_checksum_crc32(output.checksum_crc32)
        .set_checksum_crc32_c(output.checksum_crc32_c)
        .set_checksum_crc64_nvme(output.checksum_crc64_nvme)
        .set_checksum_sha256(output.checksum_sha256)
        .build())
}

async fn upload_with_client(options: &Options, object: Bytes) -> ProbeResult<()> {
    let client = client(options)?;
    if options.single_put {
        let mut request = client
            .put_object()
            .bucket(&options.bucket)
            .key(&options.key)
            .content_length(i64::try_from(object.len())?)
            .set_checksum_algorithm(options.checksum.clone())
            .body(ByteStream::from(object))
            .customize();
        if options.unsigned_payload {
            request = request.disable_payload_signing();
        }
        request.send().await?;
        return Ok(());
    }
    let upload_id = client
        .create_multipart_upload()
        .bucket(&options.bucket)
        .key(&options.key)
        .content_type("application/octet-stream")
        .set_checksum_algorithm(options.checksum.clone())
        .send()
        .await?
        .upload_id
        .ok_or("no upload id")?;
    let mut parts = Vec::new();
    let mut in_flight = FuturesOrdered::new();
    for (index, start) in (0..object.len()).step_by(options.part_bytes).enumerate() {
        let body = object.slice(start..object.len().min(start + options.part_bytes));
        let number = i32::try_from(index + 1)?;
        in_flight.push_back(upload_part(&client, options, &upload_id, number, body));
        if in_flight.len() >= options.in_flight
            && let Some(part) = in_flight.next().await
        {
            parts.push(part?);
        }
    }
    while let Some(part) = in_flight.next().await {
        parts.push(part?);
    }
    client
        .complete_multipart_upload()
        .bucket(&options.bucket)
        .key(&options.key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

async fn upload_via_region(options: &Options, object: Bytes) -> ProbeResult<()> {
    let (access_key_id, secret_access_key) = credentials()?;
    let region = Region::new(&RegionConfig {
        name: RegionName::parse("probe")?,
        endpoint: options.endpoint.clone(),
        bucket: options.bucket.clone(),
        s3_region: "us-east-1".to_owned(),
        access_key_id,
        secret_access_key: secret_access_key.into(),
        manager: None,
        object_lock: None,
        require_lock: false,
        path_style: true,
        priority: 1,
    });
    if options.single_put {
        region.put_object(&options.key, object).await?;
        return Ok(());
    }
    let upload_id = region.create_multipart_upload(&options.key).await?;
    let mut parts = Vec::new();
    let mut in_flight = FuturesOrdered::new();
    for (index, start) in (0..object.len()).step_by(options.part_bytes).enumerate() {
        let body = object.slice(start..object.len().min(start + options.part_bytes));
        let number = i32::try_from(index + 1)?;
        let region = &region;
        let upload_id = &upload_id;
        in_flight.push_back(async move {
            let etag = region
                .upload_part(&options.key, upload_id, number, body)
                .await?;
            ProbeResult::Ok((number, etag))
        });
        if in_flight.len() >= options.in_flight
            && let Some(part) = in_flight.next().await
        {
            parts.push(part?);
        }
    }
    while let Some(part) = in_flight.next().await {
        parts.push(part?);
    }
    region
        .complete_multipart_upload(&options.key, &upload_id, &parts)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ProbeResult<()> {
    let options = parse_options()?;
    let object = Bytes::from(std::fs::read(&options.file)?);
    let started = Instant::now();
    if options.via_region {
        upload_via_region(&options, object.clone()).await?;
    } else {
        upload_with_client(&options, object.clone()).await?;
    }
    println!(
        "{:.3} s {} bytes {:?}",
        started.elapsed().as_secs_f64(),
        object.len(),
        options
    );
    Ok(())
}

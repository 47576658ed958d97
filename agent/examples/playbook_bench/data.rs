//! The tenant database: an order/event log shaped like `bench/backup-restore.sh`'s (text
//! from small vocabularies, random base64 tokens, jsonb, timestamps, numerics, btree
//! indexes, a unique index, a foreign key), grown until its `pg_dump -Fc -Z0` is about the
//! size asked for. Every object is owned by the tenant's role, as a provisioned tenant's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use lifeboat_sandbox::PostgresCluster;

/// The tenant's role and database.
pub(crate) const TENANT: &str = "bench";
/// The tenant role's password (a throwaway cluster; the probe logs in with it).
pub(crate) const TENANT_PASSWORD: &str = "pbbench-tenant-password";

/// Events inserted per statement.
const BATCH_ROWS: u64 = 100_000;
/// Events inserted to learn how many dump bytes one row takes.
const CALIBRATION_ROWS: u64 = 20_000;

const SCHEMA_SQL: &str = r#"
CREATE FUNCTION bench_words(n integer) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((ARRAY['account','payment','invoice','shipment','order','refund','customer',
    'warehouse','delivery','status','pending','approved','rejected','priority','standard','express',
    'north','south','east','west','region','report','monthly','weekly','daily','summary','backup',
    'restore','database','cluster','tenant','storage','network','latency','request','response',
    'error','warning','notice','update','create','delete','product','catalog','price','discount',
    'coupon','session','login','logout'])[1 + floor(random() * 50)::int], ' ')
  FROM generate_series(1, n)
$$;
CREATE FUNCTION bench_sentences(n integer) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((ARRAY[
    'The customer requested a refund for the damaged item.',
    'Payment was authorised by the issuing bank.',
    'Shipment left the warehouse and is on its way.',
    'Invoice was generated and sent by email.',
    'The order is waiting for stock to be replenished.',
    'Delivery was rescheduled at the request of the customer.',
    'Fraud check passed with a low risk score.',
    'Coupon applied at checkout, discount recalculated.',
    'Address validation failed, manual review required.',
    'The parcel was handed over to the courier.',
    'Customer support ticket opened about late delivery.',
    'Subscription renewed for another billing period.',
    'Card payment declined, retry scheduled.',
    'Items were split into two separate shipments.',
    'Return label created and sent to the customer.',
    'Warehouse reported a picking error, order re-queued.',
    'Tax was recalculated for the destination country.',
    'User logged in from a new device.',
    'Password reset link was sent to the registered address.',
    'Loyalty points credited to the account.'])[1 + floor(random() * 20)::int], ' ')
  FROM generate_series(1, n)
$$;
CREATE FUNCTION bench_b64(md5s integer) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT translate(encode(decode(string_agg(md5(random()::text), ''), 'hex'), 'base64'), E'\n', '')
  FROM generate_series(1, md5s)
$$;
SELECT setseed(0.5);
CREATE TABLE products (
  id integer PRIMARY KEY,
  sku text NOT NULL UNIQUE,
  name text NOT NULL,
  description text NOT NULL,
  price numeric(10,2) NOT NULL
);
INSERT INTO products
SELECT i, 'SKU-' || upper(substr(md5(i::text), 1, 10)), initcap(bench_words(3)),
       bench_words(12 + floor(random() * 12)::int) || '.', round((1 + random() * 999)::numeric, 2)
FROM generate_series(1, 2000) AS i;
CREATE TABLE customers (
  id integer PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  country text NOT NULL,
  created_at timestamptz NOT NULL,
  balance numeric(14,2) NOT NULL
);
INSERT INTO customers
SELECT g, initcap(bench_words(2)),
       'user' || g || '.' || substr(md5(random()::text), 1, 8) || '@example.com',
       (ARRAY['DE','FR','NL','SE','PL','ES','IT','US','GB','CH'])[1 + floor(random() * 10)::int],
       timestamptz '2020-01-01 00:00:00+00' + random() * interval '1000 days',
       round((random() * 100000)::numeric, 2)
FROM generate_series(1, 100000) AS g;
CREATE TABLE events (
  id bigint NOT NULL,
  customer_id integer NOT NULL,
  product_id integer NOT NULL,
  created_at timestamptz NOT NULL,
  kind text NOT NULL,
  amount numeric(12,2),
  title text NOT NULL,
  body text NOT NULL,
  signature text NOT NULL,
  payload jsonb NOT NULL
);
"#;

/// One batch of events; `{lo}`, `{hi}` and `{seed}` are replaced by numbers.
const BATCH_SQL: &str = r#"
SELECT setseed({seed});
INSERT INTO events
SELECT s.g, 1 + floor(random() * 100000)::int, p.id,
       timestamptz '2023-01-01 00:00:00+00' + s.g * interval '7 seconds' + random() * interval '1 hour',
       (ARRAY['order.created','order.paid','order.shipped','order.refunded','user.login','user.logout','invoice.sent'])[1 + floor(random() * 7)::int],
       round((random() * 5000)::numeric, 2),
       p.name,
       p.description || ' ' || bench_sentences(1) || ' ref ' || bench_b64(4),
       bench_b64(10),
       jsonb_build_object(
         'ip', '10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int,
         'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Windows NT 10.0; Win64; x64)','curl/8.5.0','okhttp/4.12.0'])[1 + floor(random() * 4)::int],
         'sku', p.sku,
         'tags', jsonb_build_array(bench_words(1), bench_words(1)),
         'score', round(random()::numeric, 4),
         'session', gen_random_uuid(),
         'trace', gen_random_uuid(),
         'attempt', floor(random() * 5)::int)
FROM (SELECT g, 1 + floor(random() * 2000)::int AS pid FROM generate_series({lo}, {hi}) AS g) AS s
JOIN products AS p ON p.id = s.pid;
"#;

const INDEXES_SQL: &str = r#"
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE INDEX events_customer_created ON events (customer_id, created_at);
CREATE INDEX events_created ON events (created_at);
CREATE UNIQUE INDEX customers_email ON customers (email);
ALTER TABLE events ADD CONSTRAINT events_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);
"#;

/// What was generated.
#[derive(Debug)]
pub(crate) struct Generated {
    pub(crate) event_rows: u64,
    pub(crate) generation: Duration,
}

/// `pg_dump -Fc -Z0` of `database` into `file`; returns its size in bytes.
pub(crate) fn dump_uncompressed(
    postgres: &PostgresCluster,
    database: &str,
    file: &Path,
) -> anyhow::Result<u64> {
    let output = Command::new(postgres.bin_dir().join("pg_dump"))
        .args(["-Fc", "-Z0", "-f"])
        .arg(file)
        .arg("-d")
        .arg(database)
        // The password in the environment, not in the arguments `ps` shows.
        .envs(postgres.libpq_environment())
        .output()
        .context("run pg_dump")?;
    ensure!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(std::fs::metadata(file).context("size of the dump")?.len())
}

/// Create the tenant's role and database and fill it until its `-Z0` dump is about
/// `target_bytes`; `scratch_file` is used for the calibration dumps.
pub(crate) async fn generate_tenant(
    postgres: &PostgresCluster,
    target_bytes: u64,
    scratch_file: &Path,
) -> anyhow::Result<Generated> {
    let started = Instant::now();
    let admin = postgres.connect("postgres").await?;
    // One statement each: CREATE DATABASE cannot run inside a multi-statement batch.
    for statement in [
        format!("CREATE ROLE {TENANT} LOGIN PASSWORD '{TENANT_PASSWORD}'"),
        format!("CREATE DATABASE {TENANT} OWNER {TENANT}"),
        format!("REVOKE CONNECT ON DATABASE {TENANT} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {TENANT} TO {TENANT}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .with_context(|| format!("create the tenant's role and database: {statement}"))?;
    }
    let tenant = postgres.connect(TENANT).await?;
    tenant
        .batch_execute(&format!("SET ROLE {TENANT}; {SCHEMA_SQL}"))
        .await
        .context("create the schema")?;
    let base_bytes = dump_uncompressed(postgres, TENANT, scratch_file)?;
    insert_events(&tenant, 1, CALIBRATION_ROWS).await?;
    let calibrated_bytes = dump_uncompressed(postgres, TENANT, scratch_file)?;
    let bytes_per_row =
        (calibrated_bytes.saturating_sub(base_bytes) as f64 / CALIBRATION_ROWS as f64).max(1.0);
    let wanted_rows = ((target_bytes.saturating_sub(base_bytes)) as f64 / bytes_per_row) as u64;
    let mut inserted = CALIBRATION_ROWS;
    while inserted < wanted_rows {
        let batch = BATCH_ROWS.min(wanted_rows - inserted);
        insert_events(&tenant, inserted + 1, inserted + batch).await?;
        inserted += batch;
        eprintln!(
            "[{:>5.0} s] generated {inserted} of {wanted_rows} event rows",
            started.elapsed().as_secs_f64()
        );
    }
    tenant
        .batch_execute(INDEXES_SQL)
        .await
        .context("create the indexes")?;
    for statement in ["RESET ROLE", "VACUUM ANALYZE", "CHECKPOINT"] {
        tenant
            .batch_execute(statement)
            .await
            .with_context(|| format!("run {statement}"))?;
    }
    Ok(Generated {
        event_rows: inserted,
        generation: started.elapsed(),
    })
}

async fn insert_events(
    tenant: &tokio_postgres::Client,
    first_id: u64,
    last_id: u64,
) -> anyhow::Result<()> {
    // A seed per batch keeps the data deterministic (apart from gen_random_uuid()).
    let seed = (first_id % 1000) as f64 / 1000.0;
    let statement = BATCH_SQL
        .replace("{seed}", &format!("{seed:.3}"))
        .replace("{lo}", &first_id.to_string())
        .replace("{hi}", &last_id.to_string());
    tenant
        .batch_execute(&statement)
        .await
        .with_context(|| format!("insert events {first_id}..{last_id}"))
}

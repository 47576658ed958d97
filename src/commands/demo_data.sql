-- Sample tenant data for `lifeboat demo`: text, jsonb, timestamps, numerics, indexes.
-- `{scale}` is replaced by a small integer chosen by the demo.
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    profile jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO customers (name, email, profile, created_at)
SELECT 'Customer ' || i || ' ' || (ARRAY['Smith', 'Jones', 'García', 'Müller', 'Nguyen', 'O''Brien'])[1 + i % 6],
       'customer' || i || '@example.com',
       jsonb_build_object(
           'plan', (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3],
           'seats', i % 50,
           'tags', jsonb_build_array('t' || (i % 7), 't' || (i % 11)),
           'note', md5(i::text)),
       timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => i)
FROM generate_series(1, 10000 * {scale}) AS i;

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    total numeric(12, 2) NOT NULL,
    status text NOT NULL,
    items jsonb NOT NULL,
    ordered_at timestamptz NOT NULL
);
INSERT INTO orders (customer_id, total, status, items, ordered_at)
SELECT 1 + i % (10000 * {scale}),
       round((random() * 500)::numeric, 2),
       (ARRAY['placed', 'paid', 'shipped', 'delivered', 'refunded'])[1 + i % 5],
       jsonb_build_array(
           jsonb_build_object('sku', 'SKU-' || (i % 997), 'quantity', 1 + i % 4),
           jsonb_build_object('sku', 'SKU-' || (i % 331), 'quantity', 1)),
       timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => i * 37)
FROM generate_series(1, 40000 * {scale}) AS i;
CREATE INDEX orders_customer_id ON orders (customer_id);
CREATE INDEX orders_ordered_at ON orders (ordered_at);

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    happened_at timestamptz NOT NULL
);
INSERT INTO events (kind, payload, happened_at)
SELECT (ARRAY['login', 'logout', 'export', 'invite', 'billing'])[1 + i % 5],
       jsonb_build_object('ip', '10.0.' || (i % 256) || '.' || (i % 7), 'agent', 'Mozilla/5.0 (X11; Linux x86_64)', 'session', md5((i * 7)::text)),
       timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => i * 11)
FROM generate_series(1, 30000 * {scale}) AS i;
CREATE INDEX events_payload ON events USING gin (payload);
ANALYZE;

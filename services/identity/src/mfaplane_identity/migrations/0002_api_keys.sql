-- API credentials. A key is `mfp_<key id hex>_<secret>`; only a SHA-256 of the whole key is kept
-- (the secret has 256 random bits, so a slow hash would add nothing).
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     uuid PRIMARY KEY,
    role       text NOT NULL,
    name       text NOT NULL,
    key_hash   bytea NOT NULL,
    revoked    boolean NOT NULL DEFAULT false
);

-- Failed password attempts per email (known or not), for throttling password guessing.
CREATE TABLE IF NOT EXISTS password_failures (
    kind        text NOT NULL,
    email       text NOT NULL,
    failures    integer NOT NULL,
    window_from timestamptz NOT NULL,
    PRIMARY KEY (kind, email)
);

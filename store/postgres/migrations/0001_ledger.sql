-- The ledger's tables. Byte columns hold what the bbolt backend keeps in its
-- buckets, in the same encodings (store/codec.go), so a record's stored bytes,
-- hash and receipt are the same on both backends. Times that must survive a
-- copy exactly are Unix nanoseconds (bigint): timestamptz keeps microseconds.

-- The ledger's keys: digest_key, signing_key, unsubscribe_key; created once.
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE sites (
    id     text PRIMARY KEY,
    config bytea NOT NULL -- the Site as JSON
);

-- The exact texts shown, stored once under their SHA-256.
CREATE TABLE notices (
    hash  bytea PRIMARY KEY,
    texts bytea NOT NULL
);

-- One row per site: the head of its hash chain. An append locks it
-- (SELECT … FOR UPDATE), so replicas appending to one site never fork it.
CREATE TABLE chains (
    site    text PRIMARY KEY REFERENCES sites (id),
    count   bigint NOT NULL DEFAULT 0,
    last_id bytea,           -- 16-byte id of the last record; its time orders the next
    hash    bytea,           -- that record's hash
    purged  bytea            -- id of the last record retention made a tombstone
);

-- Append-only but for erasure (personal fields blanked) and retention
-- (tombstones). id is 16 bytes that start with recorded_at, so the primary
-- key serves every site + time range; subject and visitor are the keyed
-- digests of the email and the visitor id (the subjects/ and visitors/
-- indexes of the bbolt file). Erasure keeps them; retention clears them.
CREATE TABLE records (
    site    text  NOT NULL,
    id      bytea NOT NULL,
    body    bytea NOT NULL,
    subject bytea,
    visitor bytea,
    PRIMARY KEY (site, id)
);
CREATE INDEX records_subject ON records (subject, id) INCLUDE (site) WHERE subject IS NOT NULL;
CREATE INDEX records_visitor ON records (visitor, id) WHERE visitor IS NOT NULL;

-- Double-opt-in state per person (JSON), by keyed email digest.
CREATE TABLE optin (
    subject bytea PRIMARY KEY,
    state   bytea NOT NULL
);

-- Suppressed address and visitor id digests: a later signup of one is
-- refused, any other record naming one is stored erased.
CREATE TABLE suppression (
    subject bytea PRIMARY KEY,
    at_ns   bigint NOT NULL,
    reason  text NOT NULL
);

CREATE TABLE tokens (
    name          text PRIMARY KEY,
    hash          text NOT NULL UNIQUE, -- hex SHA-256 of the token
    created_at_ns bigint NOT NULL
);

CREATE TABLE audit (
    seq    bigserial PRIMARY KEY,
    at_ns  bigint NOT NULL,
    token  text NOT NULL,
    action text NOT NULL,
    detail text NOT NULL
);
CREATE INDEX audit_at ON audit (at_ns, seq);

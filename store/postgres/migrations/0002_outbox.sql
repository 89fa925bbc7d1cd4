-- The outbox (store/outbox.go): what must be sent, written in the same
-- transaction as the record it belongs to. id is seq as 16 hex digits.
CREATE TABLE outbox (
    seq             bigserial PRIMARY KEY,
    kind            text NOT NULL,
    site            text NOT NULL,
    key             text NOT NULL,
    ordered         boolean NOT NULL,
    record          text NOT NULL,
    payload         bytea,            -- JSON; NULL once erased
    state           text NOT NULL,    -- queued, sent, failed
    attempts        int NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT '',
    last_code       int NOT NULL DEFAULT 0,
    created_at_ns   bigint NOT NULL,
    next_attempt_ns bigint,           -- queued items only
    done_at_ns      bigint,
    subject         bytea             -- keyed email digest of the person (erasure)
);
CREATE INDEX outbox_due ON outbox (next_attempt_ns, seq) WHERE state = 'queued';
CREATE INDEX outbox_group ON outbox (kind, key, seq);
CREATE INDEX outbox_site ON outbox (site, seq);
CREATE INDEX outbox_subject ON outbox (subject) WHERE subject IS NOT NULL;
CREATE INDEX outbox_state ON outbox (kind, state);

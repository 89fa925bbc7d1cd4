-- Roles of tokens, console users and their sessions (store/users.go).
ALTER TABLE tokens ADD COLUMN role text NOT NULL DEFAULT 'admin';

CREATE TABLE users (
    email                  text PRIMARY KEY, -- normalised
    role                   text NOT NULL,
    hash                   text NOT NULL,    -- argon2id, PHC string
    created_at_ns          bigint NOT NULL,
    password_changed_at_ns bigint NOT NULL
);

-- Only the SHA-256 of a session id is kept.
CREATE TABLE sessions (
    key           bytea PRIMARY KEY,
    email         text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
    csrf          text NOT NULL,
    created_at_ns bigint NOT NULL,
    expires_at_ns bigint NOT NULL
);
CREATE INDEX sessions_email ON sessions (email);
CREATE INDEX sessions_expiry ON sessions (expires_at_ns);

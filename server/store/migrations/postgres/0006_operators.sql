-- PalmLink schema, version 6, on PostgreSQL: the operators of the console, their sessions,
-- and the failed sign-ins that throttle guessing.

CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A session is found by the SHA-256 of its cookie; the cookie itself is never stored.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- One row per sign-in attempt still counted against a name (removed by a success).
CREATE TABLE sign_in_attempts (
    name TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX sign_in_attempts_name ON sign_in_attempts (name, at);

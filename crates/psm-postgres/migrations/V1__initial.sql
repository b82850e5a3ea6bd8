-- psm schema version 1. Runs with search_path set to the configured schema only, so every object
-- below is created inside it. Identifiers compare bytewise (COLLATE "C") so ordering by id is the
-- same in every database locale.

CREATE TABLE sessions (
    id          text COLLATE "C" PRIMARY KEY,
    user_id     text COLLATE "C" NOT NULL,
    permissions text[] NOT NULL,
    -- The caller's JSON object as serialized by psm (text, not jsonb: jsonb rejects \u0000 and
    -- rewrites numbers such as 1e300, and the manager returns exactly what it was given).
    metadata    text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz
);

-- The per-user index: listing by (created_at, id), counting for limits, invalidating a user.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at, id);
-- Cleanup of expired sessions.
CREATE INDEX sessions_expires_idx ON sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    username      text NOT NULL,
    -- Lowercased forms (computed by psm, identical in every provider) carry the uniqueness.
    username_key  text COLLATE "C" NOT NULL CONSTRAINT users_username_key_unique UNIQUE,
    email         text NOT NULL,
    email_key     text COLLATE "C" NOT NULL CONSTRAINT users_email_key_unique UNIQUE,
    -- PHC string (argon2id), computed by the service.
    password_hash text NOT NULL,
    permissions   text[] NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE token_families (
    id            text COLLATE "C" PRIMARY KEY,
    user_id       text COLLATE "C" NOT NULL,
    session_id    text COLLATE "C",
    current_token text COLLATE "C" NOT NULL,
    -- Every token id the family issued and saw consumed (reuse detection).
    consumed      text[] COLLATE "C" NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked       boolean NOT NULL DEFAULT false,
    rotations     bigint NOT NULL DEFAULT 0
);

CREATE INDEX token_families_user_idx ON token_families (user_id);
CREATE INDEX token_families_expires_idx ON token_families (expires_at);

CREATE TABLE token_epochs (
    user_id text COLLATE "C" PRIMARY KEY,
    epoch   bigint NOT NULL
);

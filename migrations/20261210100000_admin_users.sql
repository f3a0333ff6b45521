-- Named admins: each person has a personal token (`wxnotify admin-user add NAME --role …`), kept
-- as its SHA-256 only. Console sessions point at the person and the token generation that made
-- them, so disabling the person or rotating the token ends their sessions at the next request;
-- a session made with a break-glass environment token keeps that token's SHA-256 and ends when
-- the token changes. Failed logins and bearer tries are counted here, so every `serve` process
-- sees the same counts. Every existing row is kept.

CREATE TABLE admin_users (
    name          text PRIMARY KEY
                  CONSTRAINT admin_users_name_plain CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role          text NOT NULL CONSTRAINT admin_users_role_known CHECK (role IN ('admin', 'viewer')),
    -- SHA-256 of the personal token; the token itself is shown once and never stored.
    token_sha256  bytea NOT NULL UNIQUE,
    -- The token's first characters, to recognise it in `admin-user list`.
    token_prefix  text NOT NULL,
    -- Raised by every rotation: sessions of an older generation are refused.
    generation    integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz,
    disabled_at   timestamptz
);

-- Sessions are keyed by the SHA-256 (hex) of the cookie from now on; rows keyed by the former
-- digest are never found again and expire as before.
ALTER TABLE admin_sessions
    ADD COLUMN admin_user        text REFERENCES admin_users (name) ON DELETE CASCADE,
    ADD COLUMN token_generation  integer,
    ADD COLUMN env_token_sha256  bytea;

-- The person behind each audited action: an admin user's name, `env:admin` / `env:viewer` for
-- the break-glass environment tokens, `system` for the retention task, `cli` for the commands.
ALTER TABLE admin_audit ADD COLUMN actor text;
UPDATE admin_audit
    SET actor = CASE WHEN role IN ('admin', 'viewer') THEN 'env:' || role ELSE role END
    WHERE actor IS NULL;

-- Failed authentications per key (`ip:…`, `prefix:…`) within a fixed window, per scope
-- (`admin`: admin API bearer tries and console logins; `api_key`: unknown producer API keys).
-- One upsert per failure; successes never write. Rows whose window ended are pruned by `serve`.
CREATE TABLE auth_failures (
    scope         text NOT NULL,
    key           text NOT NULL,
    window_start  timestamptz NOT NULL,
    failures      integer NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX auth_failures_window ON auth_failures (window_start);

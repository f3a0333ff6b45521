-- The admin API and the ops console: sessions, the audit trail, and the indexes the dead-letter
-- list and the overview need (keyset pagination newest first, by id).

-- Console sessions, server side. The cookie holds a random token; only its SHA-1 is stored.
CREATE TABLE admin_sessions (
    token_hash  text PRIMARY KEY,
    role        text NOT NULL CONSTRAINT admin_sessions_role_known CHECK (role IN ('admin', 'viewer')),
    -- The form token every POST of this session must carry.
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

-- Every admin action: who (the role and how they came: API token or console session), what,
-- on which filter or ids, how many, when, and whether it was a dry run.
CREATE TABLE admin_audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    who       text NOT NULL,
    role      text NOT NULL,
    action    text NOT NULL,
    filter    jsonb,
    ids       bigint[],
    affected  bigint NOT NULL DEFAULT 0,
    dry_run   boolean NOT NULL DEFAULT false,
    detail    jsonb
);
CREATE INDEX admin_audit_at ON admin_audit (at DESC);

-- The dead-letter list: newest first (id DESC), open letters, per filter column.
CREATE INDEX dead_letters_open_id ON dead_letters (id DESC) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_open_app ON dead_letters (app, id DESC) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_open_reason ON dead_letters (reason, id DESC) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_open_errcode ON dead_letters (errcode, id DESC) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_open_template ON dead_letters ((job ->> 'template_id'), id DESC)
    WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_open_campaign ON dead_letters ((job ->> 'campaign_id'), id DESC)
    WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_created ON dead_letters (created_at);

-- Job look-up by recipient, and sends per minute / sends today.
CREATE INDEX deliveries_recipient ON deliveries (recipient);
CREATE INDEX deliveries_oa_openid ON deliveries (oa_openid) WHERE oa_openid IS NOT NULL;
CREATE INDEX deliveries_sent_at ON deliveries (sent_at) WHERE sent_at IS NOT NULL;

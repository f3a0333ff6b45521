-- wxnotify's schema. Invariants are named CHECK constraints; every hot query has an index.

-- One row per configured OA / Mini Program pair (upserted from the configuration at start).
CREATE TABLE apps (
    name          text PRIMARY KEY CONSTRAINT apps_name_form CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    oa_appid      text NOT NULL,
    mp_appid      text,
    -- 45009 (daily quota used up) pauses the app's sending until this instant.
    paused_until  timestamptz,
    pause_reason  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Mini Program users, from jscode2session at login. The session key stays here, server side.
CREATE TABLE mp_users (
    app          text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    mp_openid    text NOT NULL,
    unionid      text,
    session_key  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, mp_openid)
);
-- The join mp_openid -> unionid is by primary key; unionid -> mp users for the reverse look-up.
CREATE INDEX mp_users_unionid ON mp_users (app, unionid) WHERE unionid IS NOT NULL;

-- Official Account followers, from the follower sync and subscribe/unsubscribe events.
CREATE TABLE oa_followers (
    app             text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    oa_openid       text NOT NULL,
    unionid         text,
    subscribed      boolean NOT NULL,
    subscribe_time  timestamptz,
    -- When a sync pass or an event last confirmed this row; a complete pass marks rows it did not
    -- see as unsubscribed.
    synced_at       timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, oa_openid)
);
-- The hot join unionid -> subscribed OA openid.
CREATE INDEX oa_followers_unionid ON oa_followers (app, unionid) WHERE unionid IS NOT NULL;

-- Each app's current access token, shared by every process. One process refreshes at a time: it
-- takes the refresh lease with a conditional update (no lock is held across the call to WeChat; a
-- crashed holder's lease runs out). A process that saw 40001 with token T expires T only if T is
-- still the stored token (compare and swap).
CREATE TABLE access_tokens (
    app                  text PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
    token                text CONSTRAINT access_tokens_token_not_empty CHECK (token <> ''),
    expires_at           timestamptz,
    fetched_at           timestamptz,
    source               text CONSTRAINT access_tokens_source_known CHECK (source IN ('stable', 'classic')),
    refresh_holder       uuid,
    refresh_lease_until  timestamptz,
    refreshes            bigint NOT NULL DEFAULT 0,
    CONSTRAINT access_tokens_token_has_expiry CHECK ((token IS NULL) = (expires_at IS NULL))
);

-- The delivery ledger: one row per job id, the single record of where a job is.
CREATE TABLE deliveries (
    job_id          text PRIMARY KEY,
    app             text NOT NULL,
    recipient_kind  text NOT NULL CONSTRAINT deliveries_recipient_kind_known
                        CHECK (recipient_kind IN ('mp_openid', 'unionid', 'oa_openid', 'unknown')),
    recipient       text NOT NULL,
    oa_openid       text,
    template_id     text NOT NULL,
    campaign_id     uuid,
    lane            text NOT NULL CONSTRAINT deliveries_lane_known CHECK (lane IN ('jobs', 'bulk')),
    state           text NOT NULL CONSTRAINT deliveries_state_known
                        CHECK (state IN ('sending', 'retrying', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0 CONSTRAINT deliveries_attempts_non_negative CHECK (attempts >= 0),
    -- How many times the job id arrived again after it was sent or dead (and was not sent again).
    duplicates      integer NOT NULL DEFAULT 0,
    msgid           bigint,
    last_errcode    bigint,
    last_errmsg     text,
    dead_reason     text,
    receipt_status  text,
    receipt_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CONSTRAINT deliveries_sent_has_msgid CHECK (state <> 'sent' OR msgid IS NOT NULL),
    CONSTRAINT deliveries_dead_has_reason CHECK (state <> 'dead' OR dead_reason IS NOT NULL)
);
-- TEMPLATESENDJOBFINISH carries the msgid.
CREATE INDEX deliveries_msgid ON deliveries (msgid) WHERE msgid IS NOT NULL;
CREATE INDEX deliveries_campaign ON deliveries (campaign_id, state) WHERE campaign_id IS NOT NULL;
CREATE INDEX deliveries_state_updated ON deliveries (state, updated_at);

-- One row per attempt at WeChat, for the attempt history of dead letters and for debugging.
CREATE TABLE delivery_attempts (
    job_id      text NOT NULL,
    attempt     integer NOT NULL,
    outcome     text NOT NULL,
    errcode     bigint,
    errmsg      text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);

-- Dead letters: what could not be sent, with why, the original job and its attempt history.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    job_id      text,
    app         text,
    reason      text NOT NULL CONSTRAINT dead_letters_reason_not_empty CHECK (reason <> ''),
    errcode     bigint,
    errmsg      text,
    -- The job as it arrived: JSON when it parsed, else the raw bytes as lossy UTF-8 text.
    job         jsonb,
    raw         text,
    attempts    integer NOT NULL DEFAULT 0,
    -- 'worker' (classified by wxnotify) or 'broker' (RabbitMQ's delivery limit).
    source      text NOT NULL CONSTRAINT dead_letters_source_known CHECK (source IN ('worker', 'broker')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    CONSTRAINT dead_letters_job_or_raw CHECK (job IS NOT NULL OR raw IS NOT NULL)
);
CREATE INDEX dead_letters_open ON dead_letters (reason, created_at) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_job ON dead_letters (job_id);

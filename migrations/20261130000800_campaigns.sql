-- Bulk campaigns: one template to a whole audience, snapshotted once, dispatched in chunks.

-- A campaign and its pacing. `cursor` is the dispatcher's position in the snapshot (the last
-- `send_seq` published): a restarted dispatcher resumes after it, and it is also the number of
-- recipients dispatched (reachable recipients are numbered 1..reachable without gaps).
-- `audience`, `reachable` and `unreachable` are facts of the snapshot, fixed at creation; the
-- progress of sending is always read from the ledger (`deliveries.campaign_id`).
CREATE TABLE campaigns (
    id               uuid PRIMARY KEY,
    app              text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    template_id      text NOT NULL CONSTRAINT campaigns_template_not_empty CHECK (template_id <> ''),
    data             jsonb NOT NULL,
    url              text,
    miniprogram      jsonb,
    not_after        timestamptz,
    audience_kind    text NOT NULL CONSTRAINT campaigns_audience_kind_known
                        CHECK (audience_kind IN ('followers', 'file', 'list')),
    state            text NOT NULL DEFAULT 'draft' CONSTRAINT campaigns_state_known
                        CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    rate_per_second  integer NOT NULL CONSTRAINT campaigns_rate_positive CHECK (rate_per_second > 0),
    window_start     time,
    window_end       time,
    time_zone        text NOT NULL DEFAULT 'UTC',
    start_at         timestamptz,
    daily_cap        bigint CONSTRAINT campaigns_daily_cap_positive CHECK (daily_cap > 0),
    audience         bigint NOT NULL,
    reachable        bigint NOT NULL,
    unreachable      jsonb NOT NULL DEFAULT '{}',
    cursor           bigint NOT NULL DEFAULT 0,
    -- The daily cap's day (in the campaign's time zone) and what was dispatched on it.
    cap_day          date,
    cap_day_dispatched bigint NOT NULL DEFAULT 0,
    -- The dispatcher that drives the campaign, until its lease runs out (it renews it while alive).
    lease_holder     uuid,
    lease_until      timestamptz,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaigns_window_whole CHECK ((window_start IS NULL) = (window_end IS NULL)),
    CONSTRAINT campaigns_reachable_in_audience CHECK (reachable >= 0 AND reachable <= audience),
    CONSTRAINT campaigns_cursor_in_range CHECK (cursor >= 0 AND cursor <= reachable)
);
CREATE INDEX campaigns_active ON campaigns (state) WHERE state IN ('scheduled', 'running');
CREATE INDEX campaigns_created ON campaigns (created_at DESC);

-- Who changed a campaign's state, when, from what to what.
CREATE TABLE campaign_state_changes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    from_state   text,
    to_state     text NOT NULL,
    actor        text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_state_changes_campaign ON campaign_state_changes (campaign_id, at);

-- The audience snapshot: one row per distinct recipient, resolved once at creation. A reachable
-- recipient has its OA openid and a `send_seq` (1..reachable, the dispatch order); an unreachable
-- one has the reason instead.
CREATE TABLE campaign_recipients (
    campaign_id     uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    line            bigint NOT NULL,
    recipient_kind  text NOT NULL CONSTRAINT campaign_recipients_kind_known
                        CHECK (recipient_kind IN ('mp_openid', 'unionid', 'oa_openid')),
    recipient       text NOT NULL,
    data            jsonb,
    oa_openid       text,
    send_seq        bigint,
    unreachable     text CONSTRAINT campaign_recipients_reason_known
                        CHECK (unreachable IN ('unknown_mp_user', 'no_unionid', 'not_following')),
    PRIMARY KEY (campaign_id, line),
    CONSTRAINT campaign_recipients_reachable_or_reason CHECK (
        (unreachable IS NULL AND oa_openid IS NOT NULL AND send_seq IS NOT NULL)
        OR (unreachable IS NOT NULL AND send_seq IS NULL))
);
CREATE UNIQUE INDEX campaign_recipients_send ON campaign_recipients (campaign_id, send_seq)
    WHERE send_seq IS NOT NULL;

-- A job of a cancelled campaign that was already on the lane is recorded `cancelled`, not sent.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_known;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_known
    CHECK (state IN ('sending', 'retrying', 'sent', 'dead', 'cancelled'));

-- Today's sends of an app (the transactional reserve of the daily quota).
CREATE INDEX deliveries_app_sent ON deliveries (app, sent_at) WHERE state = 'sent';

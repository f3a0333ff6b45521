-- Issue 14: the template catalog, the real daily quota, and blocked messages.

-- The OA's private templates per app, as `get_all_private_template` last listed them. A sync
-- replaces an app's rows in one transaction; `placeholders` are the `{{key.DATA}}` names of
-- `content`, in order, the exact keys a message's `data` must have.
CREATE TABLE templates (
    app           text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    template_id   text NOT NULL,
    title         text NOT NULL,
    content       text NOT NULL,
    placeholders  text[] NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, template_id)
);

-- When each app's catalog was last synced (an app without a row was never synced: its jobs are
-- not checked against templates, only warned about) and what asked for it.
CREATE TABLE template_syncs (
    app        text PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    templates  integer NOT NULL CONSTRAINT template_syncs_templates_non_negative CHECK (templates >= 0),
    trigger    text NOT NULL CONSTRAINT template_syncs_trigger_known
                   CHECK (trigger IN ('schedule', 'command', 'unknown_template'))
);

-- The latest `openapi/quota/get` answer per app and API path. Between reads, the sends of the
-- Beijing-time day are counted from `deliveries.sent_at` (index below).
CREATE TABLE api_quotas (
    app          text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    cgi_path     text NOT NULL,
    daily_limit  bigint NOT NULL CONSTRAINT api_quotas_limit_non_negative CHECK (daily_limit >= 0),
    used         bigint NOT NULL CONSTRAINT api_quotas_used_non_negative CHECK (used >= 0),
    remain       bigint NOT NULL,
    read_at      timestamptz NOT NULL DEFAULT now(),
    trigger      text NOT NULL CONSTRAINT api_quotas_trigger_known
                     CHECK (trigger IN ('schedule', 'command', 'quota_exhausted')),
    PRIMARY KEY (app, cgi_path)
);

-- `truncated`: the fields a job asked to have shortened (`"truncate": true`) and how, e.g.
-- {"thing1": {"from": 23, "to": 20}}; NULL when nothing was cut.
-- `blocked_at` / `block_record_id`: WeChat accepted the message and later intercepted it
-- (found by the `queryblocktmplmsg` reconciliation). The state stays `sent` (WeChat did accept
-- it); a blocked message is a sent one with `blocked_at` set.
ALTER TABLE deliveries
    ADD COLUMN truncated jsonb,
    ADD COLUMN blocked_at timestamptz,
    ADD COLUMN block_record_id bigint;
-- The day's send count per app, and the reconciliation's match by recipient and time.
CREATE INDEX deliveries_app_sent_at ON deliveries (app, sent_at) WHERE sent_at IS NOT NULL;

-- How far the reconciliation has read `queryblocktmplmsg` per app and template (its `id`s grow:
-- `largest_id` is the paging cursor WeChat asks for).
CREATE TABLE block_reconcile_cursors (
    app          text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    template_id  text NOT NULL,
    largest_id   bigint NOT NULL DEFAULT 0,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, template_id)
);

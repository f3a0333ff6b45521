-- The producer API (`POST /v1/notifications`): API keys per app, the content hash of every job id
-- taken over HTTP (idempotency), and signed outcome webhooks per app fed by an outbox.

-- Producer API keys. The key itself is shown once at creation and never stored: only its SHA-256
-- (the key has 256 random bits, so a plain hash is enough; no slow KDF is needed) and a short
-- prefix to recognise it in listings.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    app         text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    key_sha256  bytea NOT NULL CONSTRAINT api_keys_hash_length CHECK (length(key_sha256) = 32),
    prefix      text NOT NULL,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
-- Every request looks its bearer key up by hash.
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_sha256);
CREATE INDEX api_keys_app ON api_keys (app, created_at);

-- Every job id a producer sent over HTTP, with the SHA-256 of its normalised JSON: the same id
-- with the same content answers with the existing status, with other content 409. The row is
-- written before the job is published; `accepted_at` is set once RabbitMQ confirmed it, so a job
-- whose publish was never confirmed is never reported accepted.
CREATE TABLE api_notifications (
    job_id          text PRIMARY KEY,
    app             text NOT NULL,
    content_sha256  bytea NOT NULL CONSTRAINT api_notifications_hash_length CHECK (length(content_sha256) = 32),
    api_key_id      uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    accepted_at     timestamptz
);

-- One outcome webhook per app (optional). The signing secret is needed in clear to sign, so it
-- is stored as is; it is shown once when set and never printed again.
CREATE TABLE app_webhooks (
    app         text PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
    url         text NOT NULL CONSTRAINT app_webhooks_url_http CHECK (url ~ '^https?://'),
    secret      text NOT NULL CONSTRAINT app_webhooks_secret_not_empty CHECK (secret <> ''),
    -- Also announce every send WeChat accepted (dead jobs and failed receipts always are).
    send_sent   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Outcome events waiting to be (or already) posted to an app's webhook. Filled by the triggers
-- below in the transaction that changes the ledger; drained by `wxnotify serve`. The payload is
-- fixed when the event happens.
CREATE TABLE webhook_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app              text NOT NULL,
    job_id           text NOT NULL,
    event            text NOT NULL CONSTRAINT webhook_outbox_event_known
                         CHECK (event IN ('dead', 'receipt_failed', 'sent')),
    payload          jsonb NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    -- Given up after the last attempt.
    failed_at        timestamptz,
    CONSTRAINT webhook_outbox_settled_once CHECK (delivered_at IS NULL OR failed_at IS NULL)
);
-- The drainer's query: events still to post, by due time.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- The event rows of changed ledger rows. Statement-level triggers with transition tables: one
-- INSERT ... SELECT per ledger statement (the worker's statements change up to 256 rows each),
-- and nothing but one probe of the (tiny) app_webhooks table when no app has a webhook. One
-- function serves both triggers; `old_rows` exists only for UPDATE.
CREATE FUNCTION deliveries_webhook_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM app_webhooks) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO webhook_outbox (app, job_id, event, payload)
        SELECT n.app, n.job_id, e.event,
               jsonb_strip_nulls(jsonb_build_object(
                   'event', e.event, 'id', n.job_id, 'app', n.app, 'state', n.state,
                   'reason', n.dead_reason, 'errcode', n.last_errcode, 'errmsg', n.last_errmsg,
                   'attempts', n.attempts, 'msgid', n.msgid::text, 'sent_at', n.sent_at,
                   'receipt', CASE WHEN n.receipt_status IS NOT NULL THEN
                       jsonb_build_object('status', n.receipt_status, 'at', n.receipt_at) END,
                   'campaign_id', n.campaign_id, 'occurred_at', now()))
        FROM new_rows n
        JOIN app_webhooks w ON w.app = n.app
        JOIN old_rows o ON o.job_id = n.job_id
        CROSS JOIN LATERAL (VALUES
            (CASE WHEN n.state = 'dead' AND o.state <> 'dead' THEN 'dead' END),
            (CASE WHEN w.send_sent AND n.state = 'sent' AND o.state <> 'sent' THEN 'sent' END),
            (CASE WHEN n.receipt_status IS NOT NULL AND n.receipt_status <> 'success'
                       AND n.receipt_status IS DISTINCT FROM o.receipt_status THEN 'receipt_failed' END)
        ) AS e(event)
        WHERE e.event IS NOT NULL;
    ELSE
        INSERT INTO webhook_outbox (app, job_id, event, payload)
        SELECT n.app, n.job_id, e.event,
               jsonb_strip_nulls(jsonb_build_object(
                   'event', e.event, 'id', n.job_id, 'app', n.app, 'state', n.state,
                   'reason', n.dead_reason, 'errcode', n.last_errcode, 'errmsg', n.last_errmsg,
                   'attempts', n.attempts, 'msgid', n.msgid::text, 'sent_at', n.sent_at,
                   'receipt', CASE WHEN n.receipt_status IS NOT NULL THEN
                       jsonb_build_object('status', n.receipt_status, 'at', n.receipt_at) END,
                   'campaign_id', n.campaign_id, 'occurred_at', now()))
        FROM new_rows n
        JOIN app_webhooks w ON w.app = n.app
        CROSS JOIN LATERAL (VALUES
            (CASE WHEN n.state = 'dead' THEN 'dead' END),
            (CASE WHEN w.send_sent AND n.state = 'sent' THEN 'sent' END),
            (CASE WHEN n.receipt_status IS NOT NULL AND n.receipt_status <> 'success' THEN 'receipt_failed' END)
        ) AS e(event)
        WHERE e.event IS NOT NULL;
    END IF;
    GET DIAGNOSTICS added = ROW_COUNT;
    IF added > 0 THEN
        PERFORM pg_notify('wxnotify_webhooks', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_webhooks_update
    AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_webhook_events();

CREATE TRIGGER deliveries_webhooks_insert
    AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_webhook_events();

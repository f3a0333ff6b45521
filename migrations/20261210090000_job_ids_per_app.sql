-- Job ids are per app: two apps may use the same id, and nothing one app does with an id can be
-- seen or felt by the other. Every table keyed by a job id is keyed by (app, job_id) from here
-- on; every existing row keeps its key, with the app it already carried (or its delivery's).
-- WeChat's client_msg_id stays the job id: WeChat scopes it to the account, which is the app's.
--
-- The keys lead with the job id, not the app: a batch of the ledger names its rows by
-- `job_id = ANY(…)`, which the leading column answers from the index; led by the app (a handful
-- of values), the planner scans every row of the app while the table's statistics are young.

-- The tables that point at `deliveries` let go of its old key first.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_job_fk;
ALTER TABLE review_holds DROP CONSTRAINT review_holds_job_id_fkey;

ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_pkey PRIMARY KEY (job_id, app);

-- Attempts and review holds carry their delivery's app.
ALTER TABLE delivery_attempts ADD COLUMN app text;
UPDATE delivery_attempts a SET app = d.app FROM deliveries d WHERE d.job_id = a.job_id;
ALTER TABLE delivery_attempts ALTER COLUMN app SET NOT NULL;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (job_id, app, attempt);
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_job_fk
    FOREIGN KEY (job_id, app) REFERENCES deliveries (job_id, app) ON DELETE CASCADE;

ALTER TABLE review_holds ADD COLUMN app text;
UPDATE review_holds h SET app = d.app FROM deliveries d WHERE d.job_id = h.job_id;
ALTER TABLE review_holds ALTER COLUMN app SET NOT NULL;
ALTER TABLE review_holds DROP CONSTRAINT review_holds_pkey;
ALTER TABLE review_holds ADD CONSTRAINT review_holds_pkey PRIMARY KEY (job_id, app);
ALTER TABLE review_holds ADD CONSTRAINT review_holds_job_fk
    FOREIGN KEY (job_id, app) REFERENCES deliveries (job_id, app) ON DELETE CASCADE;

-- The producer API's record of the ids it took: per app, so a 409 never tells one app which ids
-- another used.
ALTER TABLE api_notifications DROP CONSTRAINT api_notifications_pkey;
ALTER TABLE api_notifications ADD CONSTRAINT api_notifications_pkey PRIMARY KEY (job_id, app);

-- Dead letters are looked up by their job within its app.
DROP INDEX dead_letters_job;
CREATE INDEX dead_letters_job ON dead_letters (job_id, app);

-- The outcome events of changed ledger rows: a row's old self is the one of its app and id.
CREATE OR REPLACE FUNCTION deliveries_webhook_events() RETURNS trigger LANGUAGE plpgsql AS $$
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
        JOIN old_rows o ON o.app = n.app AND o.job_id = n.job_id
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

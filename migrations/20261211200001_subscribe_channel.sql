-- The second channel: Mini Program subscribe messages sent by the worker.
--
-- 1. A new dead reason, `no_channel`: the person does not follow the OA (or the job has no OA
--    template message) and holds no subscribe grant for the job's subscribe template.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_dead_reason_known;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_dead_reason_known CHECK (
    dead_reason IS NULL OR dead_reason IN (
        'malformed', 'unknown_app', 'unknown_mp_user', 'no_unionid', 'not_following', 'expired',
        'recipient_rejected', 'payload_rejected', 'content_blocked', 'config_rejected', 'rejected',
        'retries_exhausted', 'delivery_limit', 'outcome_unknown', 'no_channel'
    )
);
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_reason_known;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_known CHECK (
    reason IN (
        'malformed', 'unknown_app', 'unknown_mp_user', 'no_unionid', 'not_following', 'expired',
        'recipient_rejected', 'payload_rejected', 'content_blocked', 'config_rejected', 'rejected',
        'retries_exhausted', 'delivery_limit', 'outcome_unknown', 'no_channel'
    )
);

-- 2. A sent job has a msgid unless it was held for review or is a subscribe message. (The
--    earlier form let a row without a channel through: `NULL = 'mp_subscribe'` is not false.)
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_sent_has_msgid,
    ADD CONSTRAINT deliveries_sent_has_msgid
        CHECK (state <> 'sent' OR msgid IS NOT NULL OR held_at IS NOT NULL
               OR channel IS NOT DISTINCT FROM 'mp_subscribe');

-- 3. The Mini Program's access token beside the OA's: one row per app and kind (`oa`, `mp`),
--    shared by every process in the same way.
ALTER TABLE access_tokens
    ADD COLUMN kind text NOT NULL DEFAULT 'oa'
        CONSTRAINT access_tokens_kind_known CHECK (kind IN ('oa', 'mp')),
    DROP CONSTRAINT access_tokens_pkey,
    ADD PRIMARY KEY (app, kind);

-- 4. What the end of a subscribe attempt does to its grant. The claim reserves a grant
--    (`mp_grants.used + 1`) in the transaction that claims the job and marks the ledger row
--    (`channel = 'mp_subscribe'`, `mp_openid`, `mp_template_id`). When the row then leaves
--    `sending` for `retrying`, `dead` or `cancelled`:
--    - a send whose answer was lost (`uncertain_since` set) keeps its grant used: it may have
--      reached the person;
--    - otherwise nothing reached the person and the grant is given back (`used - 1`);
--    - a 43101 answer (WeChat holds no grant) also writes off what is left: a one-time row's
--      `voided` becomes `granted - used`, a long-term row turns `reject`.
--    A row that waits for a retry drops its mark (the next claim chooses again); a dead row keeps
--    it when a send was made (so it shows the channel it was sent on), else drops it.
--    `sent`, `held` and `duplicate` keep the grant used. Every writer of the ledger goes through
--    this one rule.
CREATE FUNCTION deliveries_mp_grant_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uncertain_since IS NOT NULL THEN
        RETURN NEW;
    END IF;
    UPDATE mp_grants g
    SET used = GREATEST(g.used - 1, 0),
        voided = CASE WHEN NEW.last_errcode = 43101 AND NOT g.long_term
                      THEN g.granted - GREATEST(g.used - 1, 0) ELSE g.voided END,
        state = CASE WHEN NEW.last_errcode = 43101 AND g.long_term THEN 'reject' ELSE g.state END,
        updated_at = now()
    WHERE g.app = OLD.app AND g.mp_openid = OLD.mp_openid AND g.template_id = OLD.mp_template_id;
    IF NEW.state <> 'dead' OR NEW.attempts = OLD.attempts THEN
        NEW.channel := NULL;
        NEW.mp_openid := NULL;
        NEW.mp_template_id := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER deliveries_mp_grant_end
    BEFORE UPDATE OF state ON deliveries
    FOR EACH ROW
    WHEN (OLD.state = 'sending' AND OLD.channel = 'mp_subscribe'
          AND NEW.state IN ('retrying', 'dead', 'cancelled'))
    EXECUTE FUNCTION deliveries_mp_grant_end();

-- 5. A dead letter keeps the channel its job was sent on (when a send was made).
ALTER TABLE dead_letters ADD COLUMN channel text CONSTRAINT dead_letters_channel_known
    CHECK (channel IN ('oa_template', 'mp_subscribe'));

-- 6. The outcome webhooks name the channel that sent the job.
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
                   'channel', n.channel,
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
                   'channel', n.channel,
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

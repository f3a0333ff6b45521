-- Real WeChat's answers that are neither "sent" nor "dead", and pauses of a whole app.
--
-- `held`: WeChat answered 40252: the message went into the platform's review. It is never sent
-- again; after the review window the reconciliation decides: listed by queryblocktmplmsg (the
-- review blocked it) → dead `content_blocked`; not listed → `sent`, delivered after review (no
-- msgid: WeChat gives none for a held message).
--
-- `duplicate`: WeChat answered 40241 ("the message is duplicate in 60 seconds"): an identical
-- message may already have gone out, so the job is not sent again, and it is not dead either.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_known;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_known
    CHECK (state IN ('sending', 'retrying', 'sent', 'dead', 'cancelled', 'held', 'duplicate'));

-- When WeChat answered 40252. Kept after the review decided, so a job sent after review is
-- recognisable (it has no msgid).
ALTER TABLE deliveries ADD COLUMN held_at timestamptz;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_held_since CHECK (state <> 'held' OR held_at IS NOT NULL);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_sent_has_msgid;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_sent_has_msgid
    CHECK (state <> 'sent' OR msgid IS NOT NULL OR held_at IS NOT NULL);

-- The reconciliation's queries: an app's held jobs (and those sent after review, whose verdict
-- may still come late), oldest first.
CREATE INDEX deliveries_held ON deliveries (app, held_at) WHERE held_at IS NOT NULL;

-- The job of each held message, kept so a message the review blocks becomes a dead letter with
-- its job (to read, and to replay once its wording is changed). Removed two days after the
-- review decided.
CREATE TABLE review_holds (
    job_id      text PRIMARY KEY REFERENCES deliveries (job_id) ON DELETE CASCADE,
    job         jsonb NOT NULL,
    held_at     timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz
);

-- A dead letter the review reconciliation wrote (WeChat's review blocked a held message).
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_source_known;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_source_known
    CHECK (source IN ('worker', 'broker', 'review'));

-- An account-level problem (WeChat refuses the app itself: restricted account, server IP not in
-- the whitelist, API not authorised, wrong AppSecret …) suspends the app's sending in every
-- worker until WeChat answers normally again. Unlike `paused_until` it has no end time: a worker
-- probes the app at most every 30 s (`probe_at`) and lifts the suspension once a send goes
-- through; `POST /admin/api/apps/{name}/resume` lifts it at once.
ALTER TABLE apps ADD COLUMN suspended_at timestamptz;
ALTER TABLE apps ADD COLUMN suspend_errcode bigint;
ALTER TABLE apps ADD COLUMN suspend_errmsg text;
ALTER TABLE apps ADD COLUMN suspend_endpoint text;
ALTER TABLE apps ADD COLUMN probe_at timestamptz;
ALTER TABLE apps ADD CONSTRAINT apps_suspension_has_errcode
    CHECK (suspended_at IS NULL OR suspend_errcode IS NOT NULL);

-- What set `paused_until`: WeChat's daily quota (45009) or an operator.
ALTER TABLE apps ADD COLUMN pause_cause text CONSTRAINT apps_pause_cause_known
    CHECK (pause_cause IN ('quota', 'manual'));

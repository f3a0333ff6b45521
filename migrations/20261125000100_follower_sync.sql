-- Follower sync passes and callback event de-duplication.

-- One row per pass of `wxnotify sync-followers` over `user/get`. Each page of followers is stored
-- in the same transaction that moves `cursor`, so a run that stops (crash, Ctrl-C, --max-pages,
-- WeChat down) is resumed by the next run from exactly the first page not stored. Only a pass
-- that reached the end of the list may mark followers it did not see as unsubscribed, and it
-- does so by comparing `oa_followers.synced_at` with the pass's `started_at`.
CREATE TABLE follower_sync_passes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app              text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'running'
                        CONSTRAINT follower_sync_passes_state_known
                        CHECK (state IN ('running', 'completed', 'abandoned')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    -- The next_openid after the last page fully stored; NULL = start of the list.
    cursor           text,
    -- WeChat's follower count (`total`) at the latest page.
    total            bigint,
    pages            integer NOT NULL DEFAULT 0,
    seen             bigint NOT NULL DEFAULT 0,
    with_unionid     bigint NOT NULL DEFAULT 0,
    without_unionid  bigint NOT NULL DEFAULT 0,
    -- Followers absent from the completed pass, marked unsubscribed at completion.
    unsubscribed     bigint,
    -- 1 + the number of times an interrupted pass was resumed.
    runs             integer NOT NULL DEFAULT 1,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CONSTRAINT follower_sync_passes_completed_has_time
        CHECK ((state = 'completed') = (completed_at IS NOT NULL)),
    CONSTRAINT follower_sync_passes_counts_add_up
        CHECK (seen = with_unionid + without_unionid)
);
-- At most one unfinished pass per app: the one the next run resumes.
CREATE UNIQUE INDEX follower_sync_passes_one_running ON follower_sync_passes (app)
    WHERE state = 'running';
CREATE INDEX follower_sync_passes_app_started ON follower_sync_passes (app, started_at DESC);

-- Events pushed to the OA callback that were already applied. WeChat retries an unanswered push
-- three times, and several `serve` processes may each get one of the retries, so the key is
-- claimed in Postgres in the transaction that applies the event: the second claim finds the row
-- and the event is not applied twice. `event_key` is the Event name (plus the MsgID for
-- TEMPLATESENDJOBFINISH, since one follower may get two receipts in one second) or `msg:<MsgId>`.
CREATE TABLE callback_events (
    app          text NOT NULL,
    from_user    text NOT NULL,
    create_time  bigint NOT NULL,
    event_key    text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, from_user, create_time, event_key)
);
-- Old keys are pruned (retries come within a minute; a day is kept).
CREATE INDEX callback_events_received ON callback_events (received_at);

-- Every TEMPLATESENDJOBFINISH received, by msgid. The callback also copies the status onto the
-- `deliveries` row with that msgid; a receipt that arrives before the worker has recorded the
-- msgid (WeChat can be that quick) stays here for the ledger to pick up when it records it.
CREATE TABLE delivery_receipts (
    app          text NOT NULL,
    msgid        bigint NOT NULL,
    status       text NOT NULL,
    reported_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, msgid)
);

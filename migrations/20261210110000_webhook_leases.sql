-- Outcome webhooks that cannot repeat or hold each other up: each outbox event gets a stable id
-- (the Standard Webhooks `webhook-id`, the same on every retry), and a claim is a lease of its
-- own (`leased_until`) beside the retry schedule (`next_attempt_at`), so a process that crashed
-- mid-post gives its claims back when the lease ends. The key columns and the triggers that fill
-- the outbox are unchanged: the id is a column default.
ALTER TABLE webhook_outbox
    ADD COLUMN event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    -- Set while a `serve` process posts the event; a claim is due again once it has passed.
    ADD COLUMN leased_until timestamptz;

CREATE UNIQUE INDEX webhook_outbox_event_id ON webhook_outbox (event_id);

-- The dispatcher claims per app (each app's receiver has its own concurrency).
CREATE INDEX webhook_outbox_due_app ON webhook_outbox (app, next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

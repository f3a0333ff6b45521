-- Exactly once, even across crashes (issue 11).

-- Claims with a lease. A claim names its worker (`workers.id`), a claim id of its own (so the
-- write of an outcome whose reply was lost is recognised as this claim's own when it is tried
-- again) and when it lapses. A second delivery of a job whose claim is live waits in a retry
-- tier instead of sending; a claim is taken over once its lease ran out or its worker stopped
-- heartbeating.
ALTER TABLE deliveries
    ADD COLUMN claim_id       uuid,
    ADD COLUMN claimed_by     uuid,
    ADD COLUMN claimed_at     timestamptz,
    ADD COLUMN claimed_until  timestamptz,
    -- When the job's outcome first became uncertain: a send whose answer never came (timeout,
    -- lost answer, a worker that died holding the claim). WeChat drops a resend with the same
    -- client_msg_id only for about ten minutes after the first send; past that window (with a
    -- margin) the job is not sent again but ends dead with reason `outcome_unknown`.
    ADD COLUMN uncertain_since timestamptz,
    -- Lives of the job: `dlq replay` starts a new one. `attempts` keeps counting across lives
    -- (attempt numbers stay unique in `delivery_attempts`); `life_attempts_base` is the count at
    -- the start of the current life, against which the retry policy's attempts are measured.
    ADD COLUMN life                integer NOT NULL DEFAULT 1,
    ADD COLUMN life_attempts_base  integer NOT NULL DEFAULT 0;

-- Which life an attempt belonged to (`dlq show` shows every life).
ALTER TABLE delivery_attempts ADD COLUMN life integer NOT NULL DEFAULT 1;
ALTER TABLE dead_letters ADD COLUMN life integer NOT NULL DEFAULT 1;

-- Dead letters are written once per message: a redelivery of a message already recorded (a
-- worker that crashed after the write and before the ack, a reply that was lost) finds its key.
-- Worker dead letters of jobs are keyed by job id and claim; malformed messages by a hash of their
-- message id and body; the broker's by job id (or hash) and death count. `copies` counts
-- identical malformed messages that were published again (not redelivered).
ALTER TABLE dead_letters
    ADD COLUMN dedupe_key text,
    ADD COLUMN copies     integer NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX dead_letters_dedupe_key ON dead_letters (dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Rows left in `sending` by a claim whose worker is gone are found by the takeover; nothing
-- else scans them.

-- `dead_letters.copies` was meant to count identical malformed messages published again, but
-- nothing could tell such a copy from a redelivery of the same message (a worker that crashed
-- between the write and the ack) or from a write retried after a lost reply, so it was never
-- written and always said 1. A redelivery, a retried write and a copy all find the dead
-- letter's `dedupe_key` and add nothing; the column goes.
ALTER TABLE dead_letters DROP COLUMN copies;

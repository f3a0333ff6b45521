-- The ledger's rules in SQL, so no code path (nor a hand-written UPDATE) can break them.
--
-- A dead job and a dead letter carry one of the reasons the code knows (`DeadReason::ALL`); a
-- test keeps this list and the code's in step. The `deliveries_state_known` CHECK (sending,
-- retrying, sent, dead, cancelled) is in 20261130000800_campaigns.sql.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_dead_reason_known CHECK (
    dead_reason IS NULL OR dead_reason IN (
        'malformed', 'unknown_app', 'unknown_mp_user', 'no_unionid', 'not_following', 'expired',
        'recipient_rejected', 'payload_rejected', 'content_blocked', 'config_rejected', 'rejected',
        'retries_exhausted', 'delivery_limit', 'outcome_unknown'
    )
);
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_known CHECK (
    reason IN (
        'malformed', 'unknown_app', 'unknown_mp_user', 'no_unionid', 'not_following', 'expired',
        'recipient_rejected', 'payload_rejected', 'content_blocked', 'config_rejected', 'rejected',
        'retries_exhausted', 'delivery_limit', 'outcome_unknown'
    )
);
-- A dead reason only on a dead job.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_reason_only_when_dead
    CHECK (dead_reason IS NULL OR state = 'dead');

-- Every attempt belongs to a job on the ledger (attempts are written after the claim's row).
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_job_fk
    FOREIGN KEY (job_id) REFERENCES deliveries (job_id) ON DELETE CASCADE;

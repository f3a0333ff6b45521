-- A campaign may carry a Mini Program subscribe message (the job's `mp_subscribe` form): every
-- job of the campaign carries it, and the audience also holds the Mini Program users who do not
-- follow the OA but hold a grant for its template (addressed by their Mini Program openid).
-- `grant_holders` counts those among `reachable` (the rest of `reachable` are OA followers).
ALTER TABLE campaigns
    ADD COLUMN mp_subscribe jsonb,
    ADD COLUMN grant_holders bigint NOT NULL DEFAULT 0
        CONSTRAINT campaigns_grant_holders_in_reachable
            CHECK (grant_holders >= 0 AND grant_holders <= reachable);

-- A reachable recipient goes either to its OA follower (`oa_openid`) or, holding a grant, to its
-- Mini Program openid (`mp_openid`).
ALTER TABLE campaign_recipients
    ADD COLUMN mp_openid text,
    DROP CONSTRAINT campaign_recipients_reachable_or_reason,
    ADD CONSTRAINT campaign_recipients_reachable_or_reason CHECK (
        (unreachable IS NULL AND (oa_openid IS NOT NULL) <> (mp_openid IS NOT NULL)
             AND send_seq IS NOT NULL)
        OR (unreachable IS NOT NULL AND send_seq IS NULL AND mp_openid IS NULL));

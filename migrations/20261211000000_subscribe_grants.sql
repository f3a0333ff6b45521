-- Mini Program subscribe messages: the grants a person gave, counted per app, Mini Program openid
-- and subscribe template.
--
-- WeChat offers no API that says how many one-time grants are left, so wxnotify keeps the count:
-- `granted` rises once per acceptance (however many sources report it), `used` once per send
-- that spent one, `voided` writes off what WeChat proved gone (a 43101 answer sets
-- `voided = granted - used`). A one-time grant is left when `granted - used - voided > 0`.
-- A long-term template (type 3) sends while `state = 'accept'`; its counters still count.
-- `state` is the person's latest choice for the template: `accept`, `reject` (refused in the popup,
-- or cancelled later in the settings) or `ban` (WeChat banned the template). A row is only sent
-- to in state `accept`.
CREATE TABLE mp_grants (
    app          text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    mp_openid    text NOT NULL,
    template_id  text NOT NULL,
    granted      bigint NOT NULL DEFAULT 0 CONSTRAINT mp_grants_granted_non_negative CHECK (granted >= 0),
    used         bigint NOT NULL DEFAULT 0 CONSTRAINT mp_grants_used_non_negative CHECK (used >= 0),
    voided       bigint NOT NULL DEFAULT 0 CONSTRAINT mp_grants_voided_non_negative CHECK (voided >= 0),
    long_term    boolean NOT NULL DEFAULT false,
    state        text NOT NULL DEFAULT 'accept'
                     CONSTRAINT mp_grants_state_known CHECK (state IN ('accept', 'reject', 'ban')),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, mp_openid, template_id),
    -- A one-time grant is never spent twice.
    CONSTRAINT mp_grants_one_time_never_overspent CHECK (long_term OR used + voided <= granted)
);

-- Which channel sent a job: `oa_template` (the OA's template message) or `mp_subscribe` (the
-- Mini Program's subscribe message); NULL until a channel was chosen. A subscribe send records
-- the Mini Program openid and subscribe template it went to (receipts are joined on them), and
-- WeChat's answer to it may carry no msgid.
ALTER TABLE deliveries
    ADD COLUMN channel text CONSTRAINT deliveries_channel_known
        CHECK (channel IN ('oa_template', 'mp_subscribe')),
    ADD COLUMN mp_openid text,
    ADD COLUMN mp_template_id text,
    DROP CONSTRAINT deliveries_sent_has_msgid,
    ADD CONSTRAINT deliveries_sent_has_msgid
        CHECK (state <> 'sent' OR msgid IS NOT NULL OR held_at IS NOT NULL OR channel = 'mp_subscribe');
-- `subscribe_msg_sent_event` names the person and template (and sometimes the msgid).
CREATE INDEX deliveries_mp_receipts ON deliveries (app, mp_openid, mp_template_id, sent_at)
    WHERE channel = 'mp_subscribe';

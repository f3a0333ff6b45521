-- Mini Program subscribe messages: each acceptance counted once, the sessions of Mini Program
-- logins, and the Mini Program's templates beside the OA's in `templates`.

-- One row per acceptance of a one-time or long-term template in the subscribe popup, whichever
-- source reported it first: WeChat's `subscribe_msg_popup_event` (`event_at`, its CreateTime)
-- or the Mini Program's own report of `wx.requestSubscribeMessage` (`reported_at`, when it
-- arrived). The second source of the same tap finds the row the first one wrote (the same
-- app, person and template, the other column still empty, within the pairing window) and fills
-- its column instead of counting again; `mp_grants.granted` rises only when a row is inserted.
-- A retry of the same WeChat push is recognised before that, by its key in `callback_events`.
-- Rows are kept for a day (the pairing window is minutes), then pruned.
CREATE TABLE mp_acceptances (
    id           bigserial PRIMARY KEY,
    app          text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    mp_openid    text NOT NULL,
    template_id  text NOT NULL,
    event_at     timestamptz,
    reported_at  timestamptz,
    counted_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mp_acceptances_has_a_source CHECK (event_at IS NOT NULL OR reported_at IS NOT NULL)
);
CREATE INDEX mp_acceptances_person ON mp_acceptances (app, mp_openid, template_id, counted_at);
CREATE INDEX mp_acceptances_counted ON mp_acceptances (counted_at);

-- The sessions `POST /v1/miniprogram/login` hands out: an opaque token that lets the Mini
-- Program report its person's subscribe choices. Only the token's SHA-256 is stored.
CREATE TABLE mp_sessions (
    token_sha256  bytea PRIMARY KEY,
    app           text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    mp_openid     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX mp_sessions_expiry ON mp_sessions (expires_at);

-- The Mini Program's subscribe templates (`wxaapi/newtmpl/gettemplate`) live beside the OA's
-- template messages: `channel` says which. A sync of one channel never touches the other's rows.
-- `long_term`: type 3 (one accept allows many messages) rather than type 2 (one-time).
-- `enum_values`: `keywordEnumValueList` as {"phrase3": ["已发货", …]}, the only values a key
-- may take.
ALTER TABLE templates
    ADD COLUMN channel text NOT NULL DEFAULT 'oa_template'
        CONSTRAINT templates_channel_known CHECK (channel IN ('oa_template', 'mp_subscribe')),
    ADD COLUMN long_term boolean NOT NULL DEFAULT false,
    ADD COLUMN enum_values jsonb NOT NULL DEFAULT '{}'::jsonb;

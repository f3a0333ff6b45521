-- Every callback request's (timestamp, nonce) seen within the timestamp window, with a digest
-- of what it carried. WeChat's plaintext signature covers only token, timestamp and nonce, not
-- the body: a second request with the same pair but another body is a replay and is refused; the
-- same pair with the same body is a retry of one request and goes on to the event dedupe.
-- Rows older than twice the window are pruned by `wxnotify serve` (a request that old is refused
-- by the window before this table is consulted).
CREATE TABLE callback_nonces (
    app          text NOT NULL,
    ts           bigint NOT NULL,
    nonce        text NOT NULL,
    digest       bytea NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, ts, nonce)
);
CREATE INDEX callback_nonces_seen ON callback_nonces (seen_at);

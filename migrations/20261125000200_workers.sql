-- Live worker processes. Each process heartbeats here; an app's rate limit is split evenly among
-- the live ones, so N processes together never exceed it.
CREATE TABLE workers (
    id            uuid PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);

-- The exact per-app rate limit shared by every worker process (src/delivery/rate_limit.rs).
--
-- One row per app holds the GCRA state: `tat_us`, the theoretical arrival time in microseconds
-- since the epoch on the DATABASE's clock (no worker clock is trusted). A worker leases a small
-- block of permits with one call of rate_lease(); the function locks the row, grants what the
-- GCRA allows and moves `tat_us` forward. Whatever the number of processes, the permits granted
-- in any window of length t are at most t * rate + the burst.
CREATE TABLE rate_limits (
    app                  text PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
    tat_us               bigint NOT NULL DEFAULT 0,
    -- A transactional lease was cut short before this instant: bulk leases get nothing until then.
    tx_starved_until_us  bigint NOT NULL DEFAULT 0,
    -- Permits granted per lane, decayed with a one-second time constant: about permits/s.
    tx_recent            double precision NOT NULL DEFAULT 0,
    bulk_recent          double precision NOT NULL DEFAULT 0,
    recent_at_us         bigint NOT NULL DEFAULT 0,
    -- Totals, for the ops view and the limiter's own cost.
    leases               bigint NOT NULL DEFAULT 0,
    permits              bigint NOT NULL DEFAULT 0
);

COMMENT ON TABLE workers IS
    'Live worker processes, for the ops view only; the rate limit comes from rate_limits.';

-- Leases up to p_want permits of p_app's rate for one lane.
--   p_interval_us  the emission interval (1e6 / rate, rounded up)
--   p_burst_us     the GCRA tolerance: how early a permit may be spent (burst * interval)
--   p_ahead_us     how far beyond the tolerance a lease may reach (the lease block's length)
--   p_min          grant nothing unless at least min(p_want, p_min) permits fit (no dribbling)
-- Returns the permits granted, the arrival time of the first (base_us), the database's clock
-- (now_us) and, when less than asked was granted, how long to wait before asking again.
-- Permit k (0-based) of a grant may be spent from base_us + k * p_interval_us - p_burst_us on.
CREATE FUNCTION rate_lease(p_app text, p_tx boolean, p_want integer, p_interval_us bigint,
                           p_burst_us bigint, p_ahead_us bigint, p_min integer)
RETURNS TABLE (granted integer, base_us bigint, now_us bigint, retry_after_us bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r        rate_limits%ROWTYPE;
    v_now    bigint;
    v_base   bigint;
    v_cap    bigint;
    v_need   integer := least(greatest(p_want, 0), greatest(p_min, 1));
    v_grant  integer := 0;
    v_retry  bigint := 0;
    v_decay  double precision;
BEGIN
    SELECT * INTO r FROM rate_limits WHERE app = p_app FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limits (app) VALUES (p_app) ON CONFLICT (app) DO NOTHING;
        SELECT * INTO r FROM rate_limits WHERE app = p_app FOR UPDATE;
    END IF;
    -- Read after the lock: the clock of the moment the grant is made.
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_base := greatest(r.tat_us, v_now);
    v_cap := greatest(0, (v_now + p_burst_us + p_ahead_us - v_base) / p_interval_us);
    IF NOT p_tx AND r.tx_starved_until_us > v_now THEN
        v_cap := 0;
        v_retry := r.tx_starved_until_us - v_now;
    END IF;
    IF p_want > 0 AND v_cap >= v_need THEN
        v_grant := least(p_want, v_cap);
    END IF;
    IF v_grant < p_want AND v_retry = 0 THEN
        -- When min(want, min) permits will fit under the horizon again.
        v_retry := greatest(0, v_base + v_need * p_interval_us - p_burst_us - p_ahead_us - v_now);
    END IF;
    IF v_now - r.recent_at_us > 60000000 THEN
        v_decay := 0;
    ELSE
        v_decay := exp(-greatest(v_now - r.recent_at_us, 0)::double precision / 1e6);
    END IF;
    UPDATE rate_limits SET
        tat_us = v_base + v_grant * p_interval_us,
        tx_starved_until_us = CASE WHEN p_tx AND v_grant < p_want
                                   THEN greatest(tx_starved_until_us, v_now + 2 * (p_burst_us + p_ahead_us))
                                   ELSE tx_starved_until_us END,
        tx_recent = tx_recent * v_decay + CASE WHEN p_tx THEN v_grant ELSE 0 END,
        bulk_recent = bulk_recent * v_decay + CASE WHEN p_tx THEN 0 ELSE v_grant END,
        recent_at_us = v_now,
        leases = leases + 1,
        permits = permits + v_grant
    WHERE app = p_app;
    RETURN QUERY SELECT v_grant, v_base, v_now, v_retry;
END;
$$;

-- What an app's lanes are using now: decayed permits per second of each lane and whether a
-- transactional lease is being cut short (bulk holds back then).
CREATE FUNCTION rate_lane_usage(p_app text)
RETURNS TABLE (tx_per_second double precision, bulk_per_second double precision,
               tx_starved boolean, leases bigint, permits bigint)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN gap > 60000000 THEN 0 ELSE tx_recent * exp(-gap / 1e6) END,
           CASE WHEN gap > 60000000 THEN 0 ELSE bulk_recent * exp(-gap / 1e6) END,
           tx_starved_until_us > now_us,
           leases,
           permits
    FROM (SELECT r.*, c.now_us, greatest(c.now_us - r.recent_at_us, 0)::double precision AS gap
          FROM rate_limits r,
               (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us) c
          WHERE r.app = p_app) s;
$$;

-- Transactional first across processes, without starving bulk (issue 10, issue 8).
--
-- The first version blocked every bulk lease for two lease horizons whenever a transactional
-- lease got less than it asked for. With a steady trickle of transactional sends beside a
-- campaign, that mark was set almost all the time and the campaign got a fraction of the rate
-- the transactional lane left. Now:
--
-- * a transactional lease reaches further ahead than a bulk lease (the caller passes a longer
--   p_ahead_us), so a transactional send finds room behind the bulk permits already leased
--   without waiting for them to run out;
-- * a transactional lease that still gets less than it asked for records how many permits it
--   is short (tx_unmet), for two of its horizons; a bulk lease leaves exactly that much room
--   under its own horizon, so it never takes permits a transactional send is waiting for, and
--   takes everything else.
--
-- A lease no longer waits for its commit to reach the disk (synchronous_commit off for its own
-- transaction only): the wait was most of a lease's time when the ledger's writes keep the WAL
-- busy, and a lease answered late brings permits that are already due. Losing the last leases
-- in a crash of Postgres is harmless: the row only ever holds a time at most a lease horizon
-- (under 100 ms) ahead of the clock, and a restarted server is further along than that, so no
-- permit is granted twice.
--
-- The retry hint of a partial grant also counts the permits just granted (it used the row's
-- state before the grant, which made the next call come too early and grant nothing).
ALTER TABLE rate_limits
    DROP COLUMN tx_starved_until_us,
    ADD COLUMN tx_unmet integer NOT NULL DEFAULT 0,
    ADD COLUMN tx_unmet_until_us bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION rate_lease(p_app text, p_tx boolean, p_want integer, p_interval_us bigint,
                                      p_burst_us bigint, p_ahead_us bigint, p_min integer)
RETURNS TABLE (granted integer, base_us bigint, now_us bigint, retry_after_us bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r          rate_limits%ROWTYPE;
    v_now      bigint;
    v_base     bigint;
    v_cap      bigint;
    v_want     integer := greatest(p_want, 0);
    v_need     integer := least(greatest(p_want, 0), greatest(p_min, 1));
    v_reserved integer := 0;
    v_grant    integer := 0;
    v_retry    bigint := 0;
    v_unmet    integer;
    v_decay    double precision;
BEGIN
    SET LOCAL synchronous_commit = off;
    SELECT * INTO r FROM rate_limits WHERE app = p_app FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limits (app) VALUES (p_app) ON CONFLICT (app) DO NOTHING;
        SELECT * INTO r FROM rate_limits WHERE app = p_app FOR UPDATE;
    END IF;
    -- Read after the lock: the clock of the moment the grant is made.
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_base := greatest(r.tat_us, v_now);
    IF NOT p_tx AND r.tx_unmet_until_us > v_now THEN
        v_reserved := r.tx_unmet;
    END IF;
    v_cap := greatest(0, (v_now + p_burst_us + p_ahead_us - v_base) / p_interval_us - v_reserved);
    IF v_want > 0 AND v_cap >= v_need THEN
        v_grant := least(v_want, v_cap);
    END IF;
    IF v_grant < v_want THEN
        -- When min(want, min) more permits fit under the horizon, after this grant and the room
        -- left for transactional sends.
        v_retry := greatest(0, v_base + (v_grant + v_reserved + v_need) * p_interval_us
                                - p_burst_us - p_ahead_us - v_now);
    END IF;
    IF p_tx THEN
        -- What transactional sends are still short of: this lease's shortfall, or what is left
        -- of an earlier one (another process's) after this grant, whichever is more.
        v_unmet := v_want - v_grant;
        IF r.tx_unmet_until_us > v_now THEN
            v_unmet := greatest(v_unmet, r.tx_unmet - v_grant);
        END IF;
    END IF;
    IF v_now - r.recent_at_us > 60000000 THEN
        v_decay := 0;
    ELSE
        v_decay := exp(-greatest(v_now - r.recent_at_us, 0)::double precision / 1e6);
    END IF;
    UPDATE rate_limits SET
        tat_us = v_base + v_grant * p_interval_us,
        tx_unmet = CASE WHEN p_tx THEN v_unmet ELSE tx_unmet END,
        tx_unmet_until_us = CASE WHEN NOT p_tx THEN tx_unmet_until_us
                                 WHEN v_unmet > 0 THEN v_now + 2 * (p_burst_us + p_ahead_us)
                                 ELSE 0 END,
        tx_recent = tx_recent * v_decay + CASE WHEN p_tx THEN v_grant ELSE 0 END,
        bulk_recent = bulk_recent * v_decay + CASE WHEN p_tx THEN 0 ELSE v_grant END,
        recent_at_us = v_now,
        leases = leases + 1,
        permits = permits + v_grant
    WHERE app = p_app;
    RETURN QUERY SELECT v_grant, v_base, v_now, v_retry;
END;
$$;

-- tx_starved now means: transactional sends are short of permits (bulk leaves them room).
CREATE OR REPLACE FUNCTION rate_lane_usage(p_app text)
RETURNS TABLE (tx_per_second double precision, bulk_per_second double precision,
               tx_starved boolean, leases bigint, permits bigint)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN gap > 60000000 THEN 0 ELSE tx_recent * exp(-gap / 1e6) END,
           CASE WHEN gap > 60000000 THEN 0 ELSE bulk_recent * exp(-gap / 1e6) END,
           tx_unmet > 0 AND tx_unmet_until_us > now_us,
           leases,
           permits
    FROM (SELECT r.*, c.now_us, greatest(c.now_us - r.recent_at_us, 0)::double precision AS gap
          FROM rate_limits r,
               (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us) c
          WHERE r.app = p_app) s;
$$;

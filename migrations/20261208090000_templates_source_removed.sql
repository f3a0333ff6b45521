-- Templates WeChat's API cannot list, and templates that were listed and then vanished.
--
-- `get_all_private_template` returns an OA's historical templates (keys `keyword1` …) but not
-- its category templates (keys `thing1`, `time2` …), so a template absent from the list is not
-- a deleted one. Two columns tell the cases apart:
--
-- `source`: `api` = listed by WeChat; `manual` = registered by an operator (`wxnotify templates
-- add`, `POST /admin/api/templates`) so that the checks before sending apply to a template the
-- API does not list. A sync never changes or deletes a manual row; a listing that holds the same
-- id turns the row into `api` (WeChat's own content wins).
--
-- `removed_at`: an `api` template absent from a later listing stays as a tombstone, so that jobs
-- naming it are refused as deleted (rather than sent and answered 40037). A later listing that
-- holds the id again clears it. Manual rows are deleted outright (`templates remove`).
ALTER TABLE templates
    ADD COLUMN source text NOT NULL DEFAULT 'api'
        CONSTRAINT templates_source_known CHECK (source IN ('api', 'manual')),
    ADD COLUMN removed_at timestamptz,
    ADD CONSTRAINT templates_only_listed_ones_are_removed
        CHECK (removed_at IS NULL OR source = 'api');

-- The planner's view of open letters per filter value. Without these it multiplies the share of
-- a value (say errcode 43101) by the share of open letters, and when every 43101 letter has been
-- replayed it walks the whole newest-first index looking for ones that do not exist. The MCV
-- lists of (value, replayed_at) tell it how many open letters each value really has.
CREATE STATISTICS dead_letters_errcode_open (mcv) ON errcode, replayed_at FROM dead_letters;
CREATE STATISTICS dead_letters_reason_open (mcv) ON reason, replayed_at FROM dead_letters;
CREATE STATISTICS dead_letters_app_open (mcv) ON app, replayed_at FROM dead_letters;
CREATE STATISTICS dead_letters_template_open (mcv) ON (job ->> 'template_id'), replayed_at FROM dead_letters;
CREATE STATISTICS dead_letters_campaign_open (mcv) ON (job ->> 'campaign_id'), replayed_at FROM dead_letters;

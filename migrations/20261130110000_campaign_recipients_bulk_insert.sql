-- A campaign's snapshot inserts up to millions of recipient rows in the transaction that creates
-- the campaign. The foreign key to `campaigns` checked each row on its own (an index probe and a
-- row lock per recipient): about half of a million-follower snapshot's time. The campaign row is
-- always inserted first in that same transaction and campaigns are never deleted (they end
-- completed or cancelled and stay as the record), so the key guarded nothing that can happen.
ALTER TABLE campaign_recipients DROP CONSTRAINT IF EXISTS campaign_recipients_campaign_id_fkey;

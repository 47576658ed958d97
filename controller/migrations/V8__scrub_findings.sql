-- Bad copies (missing or corrupt) that scrubs have found, per region, ever: the counter
-- behind lifeboat_scrub_bad_copies_total. backup_copies.state forgets a bad copy once repair
-- replaces it; this total does not, so a region that keeps losing or corrupting copies shows.
-- Every finding counts, a copy found bad again by a later scrub included. Added to in the
-- statement that records the scrub's findings (scrub::apply_scrub_result), never lowered.
CREATE TABLE scrub_findings (
    region text PRIMARY KEY,
    bad_copies_found bigint NOT NULL CHECK (bad_copies_found >= 0)
);

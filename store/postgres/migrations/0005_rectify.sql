-- A rectify record is filed under the person's old and new address
-- (store/rights.go): subject2 is the new address's digest.
ALTER TABLE records ADD COLUMN subject2 bytea;
CREATE INDEX records_subject2 ON records (subject2, id) INCLUDE (site) WHERE subject2 IS NOT NULL;

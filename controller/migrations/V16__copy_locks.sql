-- Object lock (issue 11): until when a copy's objects are locked in a region with
-- `object_lock`, as the controller last set or read it. Maintenance extends the lock of
-- every kept backup before it could end; NULL where unknown (or the region has no lock).
ALTER TABLE backup_copies ADD COLUMN locked_until timestamptz;

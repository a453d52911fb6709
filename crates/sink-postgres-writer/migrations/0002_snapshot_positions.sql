-- surefoot sink-postgres-writer, schema version 2.
-- Snapshot rows have positions of their own: ('snap', consistent point - 1, row number), so
-- every row of a snapshot is applied once and orders before the stream that follows it.
ALTER TABLE surefoot_writer.checkpoint DROP CONSTRAINT IF EXISTS checkpoint_kind_check;
ALTER TABLE surefoot_writer.checkpoint
    ADD CONSTRAINT checkpoint_kind_check CHECK (kind IN ('pg', 'snap', 'seq'));

-- surefoot sink-postgres-writer, schema version 3 (issue 14, X-4 and X-5).

-- What each sink transaction applied, per (sink, source): one row per sink transaction and
-- source, its position range, and `batches`, the packed records of every batch's applied part
-- (first and last position as (major, minor), change count, SHA-256 of the changes; 68 bytes
-- each, see src/apply/record.rs). A batch at or below the checkpoint is skipped only when these
-- records prove it was applied as given; otherwise it is refused. Written in the statement that
-- advances the checkpoint; the oldest rows are deleted past the configured retention.
CREATE TABLE surefoot_writer.applied (
    sink        text        NOT NULL,
    source      text        NOT NULL,
    first_major bigint      NOT NULL,
    first_minor bigint      NOT NULL,
    last_major  bigint      NOT NULL,
    last_minor  bigint      NOT NULL,
    batches     bytea       NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, source, last_major, last_minor)
);
-- Digests do not compress: stored out of line without trying.
ALTER TABLE surefoot_writer.applied ALTER COLUMN batches SET STORAGE EXTERNAL;

-- Positions at or below the checkpoint when this migration ran were applied before records
-- were kept: a replay of them is skipped as before (the contract of versions 1 and 2).
ALTER TABLE surefoot_writer.checkpoint
    ADD COLUMN unrecorded_major bigint,
    ADD COLUMN unrecorded_minor bigint;
UPDATE surefoot_writer.checkpoint
    SET unrecorded_major = major, unrecorded_minor = minor
    WHERE major IS NOT NULL;

-- The highest outbox id the relay confirmed in each stream, with the entry's identity: a
-- message is marked sent only when the stream holds this sink's entry for it.
CREATE TABLE surefoot_writer.outbox_stream (
    sink        text        NOT NULL,
    stream      text        NOT NULL,
    high_water  bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, stream)
);

-- surefoot sink-postgres-writer, schema version 1.
-- Everything the writer owns lives in the schema `surefoot_writer`; target tables are the user's.
-- Positions are stored as (kind, major, minor): PostgreSQL = ('pg', commit LSN, ordinal),
-- sequence sources = ('seq', sequence, 0). Both halves compare as integers.

CREATE SCHEMA IF NOT EXISTS surefoot_writer;

-- The last position applied per (sink, source), written in the same transaction as the data.
CREATE TABLE surefoot_writer.checkpoint (
    sink        text        NOT NULL,
    source      text        NOT NULL,
    -- All three NULL: the row exists (so it can be locked) but nothing was applied yet.
    kind        text        CHECK (kind IN ('pg', 'seq')),
    major       bigint      CHECK (major >= 0),
    minor       bigint      CHECK (minor >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, source),
    CHECK ((kind IS NULL) = (major IS NULL) AND (kind IS NULL) = (minor IS NULL))
);

-- Append mode: one row per change, unique on (sink, source, position).
CREATE TABLE surefoot_writer.event (
    id           bigserial   PRIMARY KEY,
    sink         text        NOT NULL,
    source       text        NOT NULL,
    major        bigint      NOT NULL,
    minor        bigint      NOT NULL,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    op           text        NOT NULL,
    payload      jsonb       NOT NULL,
    commit_time  timestamptz,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sink, source, major, minor)
);

-- Messages to publish, written in the same transaction as the data they announce.
-- Ids are allocated in commit order per sink (see docs/decisions/0007-postgres-writer.md).
CREATE TABLE surefoot_writer.outbox (
    id          bigserial   PRIMARY KEY,
    sink        text        NOT NULL,
    stream      text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON surefoot_writer.outbox (sink, id) WHERE sent_at IS NULL;

-- Rows that failed validation, and batches that could not be applied, with the reason.
CREATE TABLE surefoot_writer.dead_letter (
    id           bigserial   PRIMARY KEY,
    sink         text        NOT NULL,
    source       text        NOT NULL,
    major        bigint      NOT NULL,
    minor        bigint      NOT NULL,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    reason       text        NOT NULL,
    change       jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

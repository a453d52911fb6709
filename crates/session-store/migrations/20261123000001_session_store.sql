-- surefoot session-store schema: sessions, presence, per-room history with offset and epoch.
CREATE TABLE IF NOT EXISTS sf_sessions (
    id uuid PRIMARY KEY,
    record text NOT NULL,
    version bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sf_sessions_expires_at ON sf_sessions (expires_at);

CREATE TABLE IF NOT EXISTS sf_presence (
    room text NOT NULL,
    session_id uuid NOT NULL,
    user_name text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (room, session_id)
);
CREATE INDEX IF NOT EXISTS sf_presence_expires_at ON sf_presence (expires_at);

-- One row per room: its epoch and the offset of its last message. Publishing locks the row,
-- so offsets are handed out and committed in order.
CREATE TABLE IF NOT EXISTS sf_rooms (
    room text PRIMARY KEY,
    epoch text NOT NULL,
    top_offset bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS sf_history (
    room text NOT NULL,
    seq bigint NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (room, seq)
);

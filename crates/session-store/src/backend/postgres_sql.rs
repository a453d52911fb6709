//! The PostgreSQL backend's statements (runtime-checked; nothing is spliced into them).

pub(super) const INSERT: &str = "INSERT INTO sf_sessions (id, record, version, expires_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, version = EXCLUDED.version, \
         expires_at = EXCLUDED.expires_at \
     WHERE sf_sessions.expires_at <= now() \
     RETURNING id";

pub(super) const LOAD: &str =
    "SELECT record, version, expires_at FROM sf_sessions WHERE id = $1 AND expires_at > now()";

/// The expiry kept is the later of the stored and the given one: a save of an older copy never
/// undoes a touch.
pub(super) const SAVE: &str = "UPDATE sf_sessions SET record = $2, version = version + 1, \
         expires_at = GREATEST(expires_at, $4) \
     WHERE id = $1 AND version = $3 AND expires_at > now() RETURNING version, expires_at";

pub(super) const VERSION: &str =
    "SELECT version FROM sf_sessions WHERE id = $1 AND expires_at > now()";

pub(super) const TOUCH: &str =
    "UPDATE sf_sessions SET expires_at = $2 WHERE id = $1 AND expires_at > now()";

pub(super) const DELETE: &str =
    "DELETE FROM sf_sessions WHERE id = $1 RETURNING expires_at > now() AS live";

pub(super) const HEARTBEAT: &str = "INSERT INTO sf_presence (room, session_id, user_name, expires_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (room, session_id) DO UPDATE SET user_name = EXCLUDED.user_name, \
         expires_at = EXCLUDED.expires_at";

pub(super) const DEPART: &str = "DELETE FROM sf_presence WHERE room = $1 AND session_id = $2";

pub(super) const PRESENCE: &str = "SELECT session_id, user_name, expires_at FROM sf_presence \
     WHERE room = $1 AND expires_at > now() ORDER BY session_id";

/// $1 room, $2 fresh epoch, $3 body. One statement: the room row is locked (until the
/// transaction ends), the offset taken and the message stored.
pub(super) const PUBLISH: &str = "WITH r AS ( \
         INSERT INTO sf_rooms (room, epoch, top_offset) VALUES ($1, $2, 1) \
         ON CONFLICT (room) DO UPDATE SET top_offset = sf_rooms.top_offset + 1 \
         RETURNING top_offset, epoch), \
     h AS (INSERT INTO sf_history (room, seq, body) SELECT $1, top_offset, $3 FROM r) \
     SELECT top_offset, epoch FROM r";

/// $1 room, $2 the offset just taken, $3 history length kept. A statement of its own after
/// `PUBLISH`, in its transaction: its snapshot is taken once the room row is locked, so it sees
/// every earlier message (their publishers committed before releasing the lock). In the same
/// statement as the insert it would not: that snapshot predates the wait for the lock, and a
/// message committed meanwhile would outlive the trim.
pub(super) const TRIM: &str = "DELETE FROM sf_history WHERE room = $1 AND seq <= $2 - $3";

pub(super) const ENSURE_ROOM: &str = "INSERT INTO sf_rooms (room, epoch, top_offset) VALUES ($1, $2, 0) \
     ON CONFLICT (room) DO NOTHING";

/// $1 room, $2 offset, $3 limit. One statement, so one snapshot: position, earliest and
/// messages agree.
pub(super) const HISTORY: &str = "SELECT r.top_offset, r.epoch, \
         COALESCE((SELECT min(seq) FROM sf_history h WHERE h.room = r.room), r.top_offset + 1) \
             AS earliest, \
         COALESCE((SELECT json_agg(json_build_object('o', x.seq, 'b', x.body) ORDER BY x.seq) \
             FROM (SELECT seq, body FROM sf_history h WHERE h.room = r.room AND h.seq > $2 \
                   ORDER BY seq LIMIT $3) x), '[]'::json)::text AS messages \
     FROM sf_rooms r WHERE r.room = $1";

pub(super) const LOCK_ROOM: &str = "SELECT 1 FROM sf_rooms WHERE room = $1 FOR UPDATE";
pub(super) const DELETE_HISTORY: &str = "DELETE FROM sf_history WHERE room = $1";
pub(super) const NEW_EPOCH: &str = "INSERT INTO sf_rooms (room, epoch, top_offset) VALUES ($1, $2, 0) \
     ON CONFLICT (room) DO UPDATE SET epoch = EXCLUDED.epoch, top_offset = 0";

/// Sweeps take a batch of expired rows nobody else holds (SKIP LOCKED), so several nodes can
/// sweep at once without waiting on each other or on a session being saved.
pub(super) const SWEEP_SESSIONS: &str = "DELETE FROM sf_sessions WHERE id IN ( \
         SELECT id FROM sf_sessions WHERE expires_at <= now() \
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)";

pub(super) const SWEEP_PRESENCE: &str = "DELETE FROM sf_presence WHERE (room, session_id) IN ( \
         SELECT room, session_id FROM sf_presence WHERE expires_at <= now() \
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)";

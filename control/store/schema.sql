-- The control plane's schema, version 7 (control.store.schema.SCHEMA_VERSION).
--
-- Portable SQL: the same text runs on SQLite (3.23 or later) and PostgreSQL (9.5 or later).
-- The one difference is the binary type, written ${binary} here: BLOB in SQLite, BYTEA in
-- PostgreSQL (control.store.schema.schema_statements fills it in). Nothing else is
-- dialect-specific: no AUTOINCREMENT, no SERIAL or IDENTITY (the store assigns numbers inside
-- the inserting transaction), no STRICT or WITHOUT ROWID, no date functions (times are
-- DOUBLE PRECISION seconds since the epoch), booleans as BOOLEAN with TRUE/FALSE defaults.
-- 64-bit counters and numbers are BIGINT: INTEGER is 32 bits in PostgreSQL.
--
-- Every statement is idempotent, so opening a database runs the whole file safely.
-- Comments use "--" only, and no string literal holds a semicolon: the loader splits on ";".

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS meetings (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('meeting', 'webinar')),
    suite TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    panelist_password_hash TEXT,
    host_key_digest TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'ended')),
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    recording BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    -- The unsigned 32-bit id the routing table uses (version 2), assigned by the store.
    wire_id BIGINT NOT NULL CHECK (wire_id > 0 AND wire_id < 4294967296),
    -- The features switched on at some point, a sorted JSON array of names as in
    -- usage_records.features (version 3): only ever added to, so a feature switched off again
    -- before the end is still billed, even across a restart of the control plane.
    features TEXT NOT NULL DEFAULT '[]',
    -- The registration settings, a JSON object (control/registration.py), or NULL: the
    -- meeting takes no registrations (version 4).
    registration TEXT
);

CREATE UNIQUE INDEX IF NOT EXISTS meetings_by_wire_id ON meetings (wire_id);

-- Listing, newest first, all meetings or those in one state (a restarted control plane reads
-- the open ones).
CREATE INDEX IF NOT EXISTS meetings_by_created ON meetings (created_at, id);
CREATE INDEX IF NOT EXISTS meetings_by_state ON meetings (state, created_at, id);

CREATE TABLE IF NOT EXISTS participants (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('host', 'panelist', 'attendee')),
    streams TEXT NOT NULL DEFAULT '[]',
    receive_at TEXT,
    -- SRTP master key || salt per direction, encrypted by the caller: never in clear here.
    uplink_sealed ${binary} NOT NULL,
    downlink_sealed ${binary} NOT NULL,
    worker INTEGER NOT NULL CHECK (worker >= 0),
    muted BOOLEAN NOT NULL DEFAULT FALSE,
    expelled BOOLEAN NOT NULL DEFAULT FALSE,
    joined_at DOUBLE PRECISION NOT NULL,
    left_at DOUBLE PRECISION,
    -- The unsigned 32-bit id the routing table uses (version 2), assigned by the store.
    wire_id BIGINT NOT NULL CHECK (wire_id > 0 AND wire_id < 4294967296),
    -- The node it is homed on (version 7; control/placement.py): that node alone receives
    -- from it and sends to it. NULL: joined before version 7, on the one node there was.
    node TEXT
);

CREATE UNIQUE INDEX IF NOT EXISTS participants_by_wire_id ON participants (wire_id);

-- A meeting's participants in the order they joined; also serves the foreign key's cascade.
CREATE INDEX IF NOT EXISTS participants_by_meeting ON participants (meeting_id, joined_at, id);

-- Append-only: the store has no statement that updates or deletes a usage record. meeting_id
-- is deliberately not a foreign key: the record of what a meeting used outlives the meeting.
CREATE TABLE IF NOT EXISTS usage_records (
    id BIGINT PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION NOT NULL,
    duration_s DOUBLE PRECISION NOT NULL CHECK (duration_s >= 0),
    total_participants INTEGER NOT NULL CHECK (total_participants >= 0),
    peak_participants INTEGER NOT NULL CHECK (peak_participants >= 0),
    participant_minutes DOUBLE PRECISION NOT NULL CHECK (participant_minutes >= 0),
    features TEXT NOT NULL DEFAULT '[]',
    packets_in BIGINT NOT NULL DEFAULT 0 CHECK (packets_in >= 0),
    packets_out BIGINT NOT NULL DEFAULT 0 CHECK (packets_out >= 0),
    bytes_in BIGINT NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    bytes_out BIGINT NOT NULL DEFAULT 0 CHECK (bytes_out >= 0),
    CHECK (ended_at >= started_at)
);

CREATE INDEX IF NOT EXISTS usage_by_meeting ON usage_records (meeting_id, id);

-- The numbered routing updates (the clone pattern's sequence), so that a restarted control
-- plane continues the numbers the workers follow. The primary key serves "after seq N".
-- Version 7: several nodes share the log, each numbering its own updates (`node`,
-- `node_seq`: the numbers its workers follow) while `seq` orders the rows of all of them.
-- Rows from before version 7 have neither.
CREATE TABLE IF NOT EXISTS routing_log (
    seq BIGINT PRIMARY KEY CHECK (seq > 0),
    created_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    node TEXT,
    node_seq BIGINT
);

CREATE INDEX IF NOT EXISTS routing_log_by_node ON routing_log (node, node_seq);

-- The last wire id handed out per table (version 2). A wire id is MAX + 1 over the table and
-- this counter, inside the inserting transaction, so an id is never reused after a delete: a
-- worker that remembers an ended meeting or an ejected participant never confuses it with a
-- new one.
CREATE TABLE IF NOT EXISTS wire_ids (
    name TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);

-- Registrations (version 4): one person's registration for one meeting. Personal data never
-- lies here in clear: `sealed` is AES-GCM ciphertext of the fields (a JSON object) under the
-- registrant's own data key, `wrapped_key` that data key encrypted under the server's PII
-- key, `email_tag` an HMAC of the normalised email (finds a person across meetings),
-- `token_digest` the SHA-256 of the one-time join token (NULL once used). Erasing overwrites
-- the row in place: `sealed` empty, the other three NULL, `erased_at` set; the row stays (the
-- host sees that someone registered and was erased, nothing more).
-- Version 5: a registration that must confirm its email first is 'unconfirmed' until it does
-- (it does not count against the capacity); `confirm_digest` is a keyed digest (HMAC) of the
-- code mailed to it, never the code, NULL once used up; `confirm_expires_at` when that code
-- stops working, `confirm_attempts` the wrong codes tried against it, `confirm_sends` how
-- many codes were sent and `confirm_sent_at` when the last one was.
CREATE TABLE IF NOT EXISTS registrations (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('unconfirmed', 'pending', 'approved', 'rejected')),
    sealed ${binary} NOT NULL,
    wrapped_key ${binary},
    email_tag TEXT,
    token_digest TEXT,
    -- The participant who joined with the token (not a foreign key: participants go with
    -- their meeting, and erasing the registration scrubs that participant's name).
    participant_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    erased_at DOUBLE PRECISION,
    confirm_digest TEXT,
    confirm_expires_at DOUBLE PRECISION,
    confirm_attempts INTEGER NOT NULL DEFAULT 0 CHECK (confirm_attempts >= 0),
    confirm_sends INTEGER NOT NULL DEFAULT 0 CHECK (confirm_sends >= 0),
    confirm_sent_at DOUBLE PRECISION,
    CHECK (erased_at IS NULL OR (wrapped_key IS NULL AND email_tag IS NULL))
);

-- A meeting's registrations in the order they came; also serves the foreign key's cascade.
CREATE INDEX IF NOT EXISTS registrations_by_meeting ON registrations (meeting_id, created_at, id);
-- One registration per person and meeting (erased ones have no tag, so the person may come
-- back); the same email across meetings, for erasing a person everywhere.
CREATE UNIQUE INDEX IF NOT EXISTS registrations_by_email ON registrations (meeting_id, email_tag);
CREATE INDEX IF NOT EXISTS registrations_by_email_tag ON registrations (email_tag);
-- A join token finds its registration (NULLs, used tokens, never collide).
CREATE UNIQUE INDEX IF NOT EXISTS registrations_by_token ON registrations (token_digest);

-- The audit log (version 4): host and operator actions, append-only (the store has no
-- statement that updates or deletes an entry). Ids, flags and counts only: never personal
-- data. meeting_id is not a foreign key: the record of what was done outlives the meeting.
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL CHECK (actor IN ('operator', 'host', 'system')),
    action TEXT NOT NULL,
    meeting_id TEXT,
    target TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS audit_by_meeting ON audit_log (meeting_id, id);

-- The nodes sharing this database (version 6; control/nodes.py): each registers at its start
-- and writes its heartbeat and load every 2 s; one silent for 5 s is gone. `instance` is the
-- registering process's random token, so that a second process under a running node's name is
-- refused rather than taking its row. `draining`: no new participants are placed there.
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    api_url TEXT NOT NULL,
    media_host TEXT NOT NULL,
    media_port INTEGER NOT NULL CHECK (media_port BETWEEN 1 AND 65535),
    workers INTEGER NOT NULL CHECK (workers >= 1),
    capacity INTEGER NOT NULL CHECK (capacity >= 1),
    load INTEGER NOT NULL DEFAULT 0 CHECK (load >= 0),
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1))
);

-- Trunks (version 7; control/trunks.py): one sender's streams carried from the node it is
-- homed on (`origin`) to another node with receivers in its meeting (`edge`), once, over
-- SRTP. Each end is a participant of its node's routing table: on the origin a receiver
-- (`out_wire_id`, homed on `origin_worker`, sending to the edge's `edge_worker`), on the edge
-- a sender (`in_wire_id`) of the same SSRCs. `media_sealed` is the master key of the media
-- the origin sends, `feedback_sealed` that of the RTCP feedback the edge sends back, each
-- used to protect by one node only, sealed as participants' keys are. One trunk per sender
-- and edge; it goes with its sender.
CREATE TABLE IF NOT EXISTS trunks (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    sender_id TEXT NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    origin TEXT NOT NULL,
    edge TEXT NOT NULL,
    origin_worker INTEGER NOT NULL CHECK (origin_worker >= 0),
    edge_worker INTEGER NOT NULL CHECK (edge_worker >= 0),
    out_wire_id BIGINT NOT NULL CHECK (out_wire_id > 0 AND out_wire_id < 4294967296),
    in_wire_id BIGINT NOT NULL CHECK (in_wire_id > 0 AND in_wire_id < 4294967296),
    media_sealed ${binary} NOT NULL,
    feedback_sealed ${binary} NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS trunks_by_sender ON trunks (sender_id, edge);
CREATE INDEX IF NOT EXISTS trunks_by_meeting ON trunks (meeting_id);

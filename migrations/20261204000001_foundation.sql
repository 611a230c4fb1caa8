-- The foundation schema: tenants, keys, content-addressed blobs, arrays,
-- the job queue and its event log. Later issues add tables in new files;
-- this file is never edited once applied.

CREATE TABLE labs (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    max_running_jobs integer NOT NULL CHECK (max_running_jobs > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    lab_id     uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    -- sha256 of the whole key; the key itself is never stored.
    key_hash   bytea NOT NULL UNIQUE,
    prefix     text NOT NULL,
    is_admin   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- A blob is written under a surrogate id while its bytes stream in; once
-- complete it gets its sha256 and becomes 'ready'. Identical bytes resolve to
-- one ready blob (the unique index); a second copy is deleted at finalize.
CREATE TABLE blobs (
    id         uuid PRIMARY KEY,
    sha256     bytea UNIQUE,
    size_bytes bigint NOT NULL DEFAULT 0,
    state      text NOT NULL CHECK (state IN ('writing', 'ready')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'writing' OR sha256 IS NOT NULL)
);

CREATE TABLE blob_chunks (
    blob_id    uuid NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blob_id, seq)
);
-- Chunks are already dense binary (arrays, checkpoints): compressing them
-- costs CPU on every write for little gain.
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE arrays (
    id         uuid PRIMARY KEY,
    lab_id     uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    blob_id    uuid NOT NULL REFERENCES blobs (id),
    name       text NOT NULL,
    dtype      text NOT NULL,
    shape      bigint[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX arrays_lab ON arrays (lab_id, created_at DESC, id DESC);

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    lab_id           uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    spec             jsonb NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'retry_wait', 'succeeded', 'failed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts > 0),
    run_at           timestamptz NOT NULL DEFAULT now(),
    worker_id        text,
    lease_expires_at timestamptz,
    heartbeat_at     timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    progress         double precision NOT NULL DEFAULT 0,
    result           jsonb,
    last_error       text,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    UNIQUE (lab_id, idempotency_key)
);
CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, created_at) WHERE state IN ('queued', 'retry_wait');
CREATE INDEX jobs_running ON jobs (lab_id) WHERE state = 'running';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_lab_list ON jobs (lab_id, created_at DESC, id DESC);

-- Append-only: state changes, progress and log lines of every job.
CREATE TABLE job_events (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('state', 'progress', 'log')),
    state      text,
    progress   double precision,
    message    text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Room for the resources later issues fill in (brain data, models, scores);
-- their tables arrive with those issues' migrations.

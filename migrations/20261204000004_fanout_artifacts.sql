-- Score jobs over several benchmarks fan out into one child job per
-- benchmark: a parent waits (holding no worker slot and no lease) until
-- every child is final, then is queued again to collect their results.
-- Region→layer maps are stored per scoring job as reusable artifacts, and a
-- benchmark's noise ceiling on its report stimuli is stored once, since it
-- depends on the recording and the benchmark alone, never on the model.

ALTER TABLE jobs ADD COLUMN parent_id uuid REFERENCES jobs (id) ON DELETE CASCADE;
CREATE INDEX jobs_children ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_waiting ON jobs (id) WHERE state = 'waiting';
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'retry_wait', 'waiting', 'succeeded', 'failed', 'cancelled'));

CREATE TABLE region_layer_maps (
    id         uuid PRIMARY KEY,
    lab_id     uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    model_id   uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    job_id     uuid REFERENCES jobs (id) ON DELETE SET NULL,
    -- [{"region", "layer", "score", "benchmarks"}], as the API returns it.
    regions    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX region_layer_maps_model ON region_layer_maps (lab_id, model_id, created_at DESC);

-- Key: hash of the benchmark version, the report stimuli and the ceiling
-- and metric settings; value: the engine's ceiling result per time bin.
CREATE TABLE benchmark_ceilings (
    benchmark_id uuid NOT NULL REFERENCES benchmarks (id) ON DELETE CASCADE,
    cache_key    text NOT NULL,
    ceiling      jsonb NOT NULL,
    engine_version text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (benchmark_id, cache_key)
);

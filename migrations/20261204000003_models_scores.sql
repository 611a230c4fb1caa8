-- Models (uploaded TorchScript or built-in specs), the activation cache and
-- score rows. A model version is immutable and content-addressed: its
-- version_hash covers the TorchScript file (or the spec, whose seed fixes
-- the weights) and the declared input.

CREATE TABLE models (
    id                 uuid PRIMARY KEY,
    lab_id             uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    name               text NOT NULL,
    version            integer NOT NULL CHECK (version > 0),
    kind               text NOT NULL CHECK (kind IN ('torchscript', 'builtin')),
    content_hash       text NOT NULL,
    version_hash       text NOT NULL,
    spec               jsonb,
    input_spec         jsonb NOT NULL,
    layer_names        text[],
    file_blob_id       uuid REFERENCES blobs (id),
    checkpoint_blob_id uuid REFERENCES blobs (id),
    weights_sha256     text,
    state              text NOT NULL CHECK (state IN ('probing', 'ready', 'failed')),
    error              text,
    -- [{"name": ..., "shape": [...]}] per stimulus, from the probe batch.
    layers             jsonb NOT NULL DEFAULT '[]',
    probe_job_id       uuid REFERENCES jobs (id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lab_id, name, version),
    UNIQUE (lab_id, version_hash)
);
CREATE INDEX models_lab ON models (lab_id, created_at DESC, id DESC);

-- One row per (model version, stimulus set bytes, layer, preprocessing).
CREATE TABLE activations (
    cache_key       text PRIMARY KEY,
    model_id        uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    stimulus_set_id uuid NOT NULL REFERENCES stimulus_sets (id) ON DELETE CASCADE,
    layer           text NOT NULL,
    array_id        uuid NOT NULL REFERENCES arrays (id),
    preprocessing   jsonb NOT NULL,
    hits            bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scores (
    id              bigserial PRIMARY KEY,
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    lab_id          uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    model_id        uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    benchmark_id    uuid NOT NULL REFERENCES benchmarks (id),
    layer           text NOT NULL,
    metric          text NOT NULL,
    time_bin        integer,
    -- Score of the layer on the selection stimuli (used to pick the layer).
    selection_value double precision,
    raw             double precision NOT NULL,
    ceiling         double precision,
    normalized      double precision,
    ci_low          double precision,
    ci_high         double precision,
    selected        boolean NOT NULL,
    per_neuron_array_id uuid REFERENCES arrays (id),
    seeds           jsonb NOT NULL,
    engine_version  text NOT NULL,
    libtorch_version text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scores_benchmark ON scores (benchmark_id, model_id) WHERE selected;
CREATE INDEX scores_model ON scores (model_id, created_at DESC);
CREATE INDEX scores_job ON scores (job_id);

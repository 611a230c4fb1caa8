-- Brain data: stimulus sets with per-stimulus metadata and thumbnails,
-- recordings aligned to them by stimulus id with per-neuron reliability,
-- and benchmarks (immutable, versioned recipes; public ones visible to
-- every lab). The normalized tensors of sets and recordings are ordinary
-- rows of `arrays`, so they download and compare like any array.

CREATE TABLE stimulus_sets (
    id            uuid PRIMARY KEY,
    lab_id        uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    array_id      uuid NOT NULL REFERENCES arrays (id),
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('images', 'features', 'sequences')),
    count         bigint NOT NULL CHECK (count > 0),
    -- How the upload was read: format, source dtype, layout, value range, resize.
    source        jsonb NOT NULL,
    extra_columns text[] NOT NULL DEFAULT '{}',
    has_labels    boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stimulus_sets_lab ON stimulus_sets (lab_id, created_at DESC, id DESC);

CREATE TABLE stimuli (
    set_id      uuid NOT NULL REFERENCES stimulus_sets (id) ON DELETE CASCADE,
    idx         integer NOT NULL,
    stimulus_id text NOT NULL,
    label       text,
    extra       jsonb NOT NULL DEFAULT '{}',
    thumbnail   bytea,
    PRIMARY KEY (set_id, idx),
    UNIQUE (set_id, stimulus_id)
);

CREATE TABLE recordings (
    id              uuid PRIMARY KEY,
    lab_id          uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    stimulus_set_id uuid NOT NULL REFERENCES stimulus_sets (id),
    array_id        uuid NOT NULL REFERENCES arrays (id),
    name            text NOT NULL,
    region          text,
    species         text,
    subject         text,
    session         text,
    modality        text CHECK (modality IN ('spikes', 'calcium', 'fmri', 'eeg', 'meg', 'lfp', 'other')),
    units           text,
    bin_size_ms     double precision,
    -- Index into the set of each stimulus on the recording's stimulus axis.
    stimulus_index  integer[] NOT NULL,
    neuron_ids      text[] NOT NULL,
    -- Split-half (even/odd repetitions), Spearman-Brown corrected; NULL
    -- where undefined (one repetition, no variance).
    reliability     double precision[] NOT NULL,
    nan_count       bigint NOT NULL,
    trial_averaged  boolean NOT NULL,
    source          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recordings_lab ON recordings (lab_id, created_at DESC, id DESC);

CREATE TABLE benchmarks (
    id                 uuid PRIMARY KEY,
    lab_id             uuid NOT NULL REFERENCES labs (id) ON DELETE CASCADE,
    name               text NOT NULL,
    version            integer NOT NULL CHECK (version > 0),
    description        text NOT NULL DEFAULT '',
    recording_id       uuid NOT NULL REFERENCES recordings (id),
    -- The metric request with the benchmark's splits folded into its options.
    metric             jsonb NOT NULL,
    ceiling            jsonb,
    neuron_filter      jsonb,
    -- Neuron indices the filter kept (NULL: all), fixed at creation.
    neurons            integer[],
    splits             jsonb,
    public             boolean NOT NULL DEFAULT false,
    published_at       timestamptz,
    deprecated_at      timestamptz,
    deprecation_reason text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lab_id, name, version)
);
CREATE INDEX benchmarks_lab ON benchmarks (lab_id, created_at DESC, id DESC);
CREATE INDEX benchmarks_public ON benchmarks (created_at DESC, id DESC) WHERE public;

//! Benchmarks: named, versioned, immutable recipes (recording, neuron
//! filter, metric with options and splits, ceiling and normalization).
//! Creating one validates the whole recipe against the recording, so a
//! benchmark that exists can run. Private to their lab until published;
//! published ones are visible to every lab. Deprecation hides a version from
//! listings but keeps it resolvable, so old scores stay explained.

use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::page_limit;
use super::Service;
use crate::auth::Caller;
use crate::catalog::{Metric, MetricRequest};
use crate::error::{Error, ErrorCode, Result};
use crate::inference::CeilingMethod;
use crate::model::{decode_cursor, Page};
use crate::resources::{Benchmark, BenchmarkSplits, NewBenchmark};

const COLUMNS: &str = "b.id, b.name, b.version, b.description, b.recording_id, b.metric, b.ceiling, \
     b.neuron_filter, b.neurons, b.splits, b.public, b.published_at, b.deprecated_at, b.deprecation_reason, \
     b.created_at, l.name AS lab, cardinality(r.neuron_ids) AS all_neurons";
const FROM: &str =
    "benchmarks b JOIN labs l ON l.id = b.lab_id JOIN recordings r ON r.id = b.recording_id";

/// Which benchmarks a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BenchmarkScope {
    /// The caller's own and every public one.
    #[default]
    Visible,
    Lab,
    Public,
}

#[derive(Debug, Clone, Default)]
pub struct BenchmarkFilter {
    pub scope: BenchmarkScope,
    pub name: Option<String>,
    pub include_deprecated: bool,
    pub limit: Option<u32>,
    pub page_token: Option<String>,
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(Error::invalid(format!(
            "name: {name:?} must be 1–100 characters of letters, digits, '-', '_' or '.', starting with a letter or digit"
        )));
    }
    Ok(())
}

fn json_column<T: serde::de::DeserializeOwned>(
    r: &sqlx::postgres::PgRow,
    c: &str,
) -> Result<Option<T>> {
    r.try_get::<Option<Value>, _>(c)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(Error::internal)
}

fn from_row(r: &sqlx::postgres::PgRow) -> Result<Benchmark> {
    let neurons: Option<Vec<i32>> = r.try_get("neurons")?;
    let all: i32 = r.try_get("all_neurons")?;
    let lab: String = r.try_get("lab")?;
    let name: String = r.try_get("name")?;
    let version: i32 = r.try_get("version")?;
    Ok(Benchmark {
        id: r.try_get("id")?,
        reference: format!("{lab}/{name}@{version}"),
        lab,
        name,
        version,
        description: r.try_get("description")?,
        recording_id: r.try_get("recording_id")?,
        metric: serde_json::from_value(r.try_get("metric")?).map_err(Error::internal)?,
        ceiling: json_column(r, "ceiling")?,
        neuron_filter: json_column(r, "neuron_filter")?,
        neurons_kept: neurons.map_or(all as u64, |n| n.len() as u64),
        splits: json_column(r, "splits")?,
        public: r.try_get("public")?,
        published_at: r.try_get("published_at")?,
        deprecated_at: r.try_get("deprecated_at")?,
        deprecation_reason: r.try_get("deprecation_reason")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Folds the benchmark's splits into the metric's options.
fn with_splits(metric: &MetricRequest, splits: Option<&BenchmarkSplits>) -> Result<MetricRequest> {
    let Some(s) = splits else {
        return Ok(metric.clone());
    };
    let (id, mut options) = match metric {
        MetricRequest::Id(id) => (id.clone(), serde_json::Map::new()),
        MetricRequest::WithOptions { id, options } => (id.clone(), options.clone()),
    };
    let probe = Metric::parse("metric", metric)?;
    if probe.split_plan().is_none() {
        return Err(Error::invalid(format!(
            "splits: metric {id:?} does not split its stimuli (only cross-validated metrics take splits)"
        )));
    }
    if let Some(seed) = s.seed {
        options.insert("seed".into(), seed.into());
    }
    if let Some(ex) = &s.explicit {
        options.insert(
            "splits".into(),
            serde_json::to_value(ex).map_err(Error::internal)?,
        );
    }
    Ok(MetricRequest::WithOptions { id, options })
}

impl Service {
    pub async fn create_benchmark(&self, caller: &Caller, req: NewBenchmark) -> Result<Benchmark> {
        check_name(&req.name)?;
        if req.description.chars().count() > 10_000 {
            return Err(Error::invalid(
                "description: must be at most 10000 characters",
            ));
        }
        let rec = self
            .get_recording(caller, req.recording)
            .await
            .map_err(|e| match e.code() {
                ErrorCode::NotFound => Error::invalid(format!(
                    "recording: {} is not a recording of this lab",
                    req.recording
                )),
                _ => e,
            })?;
        let metric_req = with_splits(&req.metric, req.splits.as_ref())?;
        let metric = Metric::parse("metric", &metric_req)?;
        metric.check_against("metric", rec.stimuli, 1, rec.repetitions)?;
        if let Some(c) = &req.ceiling {
            if c.method == CeilingMethod::SplitHalf && rec.repetitions < 2 {
                return Err(Error::invalid(format!(
                    "ceiling: the split-half ceiling needs at least 2 repetitions; recording {} has {}",
                    rec.id, rec.repetitions
                )));
            }
            if c.splits == 0 {
                return Err(Error::invalid("ceiling.splits: must be at least 1"));
            }
        }
        let neurons: Option<Vec<i32>> = match &req.neuron_filter {
            None => None,
            Some(f) => {
                if !f.min_reliability.is_finite() {
                    return Err(Error::invalid(
                        "neuron_filter.min_reliability: must be a finite number",
                    ));
                }
                let all = self.recording_neurons(caller, rec.id).await?;
                let kept: Vec<i32> = all
                    .iter()
                    .filter(|n| n.reliability.is_some_and(|r| r >= f.min_reliability))
                    .map(|n| n.index as i32)
                    .collect();
                if kept.is_empty() {
                    let best = all
                        .iter()
                        .filter_map(|n| n.reliability)
                        .fold(f64::NEG_INFINITY, f64::max);
                    return Err(Error::invalid(format!(
                        "neuron_filter.min_reliability: no neuron of {} reaches {} (the highest reliability is {})",
                        all.len(),
                        f.min_reliability,
                        if best.is_finite() { format!("{best:.3}") } else { "undefined".into() }
                    )));
                }
                Some(kept)
            }
        };
        let mut tx = self.pool.begin().await?;
        // Versions of one name are numbered in order; the lock serializes
        // concurrent creations of the same name.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))")
            .bind(caller.lab_id().to_string())
            .bind(&req.name)
            .execute(&mut *tx)
            .await?;
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO benchmarks (id, lab_id, name, version, description, recording_id, metric, ceiling, \
               neuron_filter, neurons, splits) \
             SELECT $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, $6, $7, $8, $9, $10 \
             FROM benchmarks WHERE lab_id = $2 AND name = $3",
        )
        .bind(id)
        .bind(caller.lab_id())
        .bind(&req.name)
        .bind(&req.description)
        .bind(rec.id)
        .bind(serde_json::to_value(&metric_req).map_err(Error::internal)?)
        .bind(req.ceiling.as_ref().map(serde_json::to_value).transpose().map_err(Error::internal)?)
        .bind(req.neuron_filter.as_ref().map(serde_json::to_value).transpose().map_err(Error::internal)?)
        .bind(&neurons)
        .bind(req.splits.as_ref().map(serde_json::to_value).transpose().map_err(Error::internal)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_benchmark(caller, &id.to_string()).await
    }

    /// By id, `lab/name@version`, or `lab/name` (its newest version that is
    /// not deprecated). Visible when the caller's lab owns it or it is public.
    pub async fn get_benchmark(&self, caller: &Caller, reference: &str) -> Result<Benchmark> {
        self.benchmark_for_lab(caller.lab_id(), reference).await
    }

    /// `get_benchmark` for a lab id (workers act for a job's lab).
    pub async fn benchmark_for_lab(&self, lab_id: Uuid, reference: &str) -> Result<Benchmark> {
        let visible = "(b.lab_id = $1 OR b.public)";
        let row = if let Ok(id) = Uuid::parse_str(reference) {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE {visible} AND b.id = $2"
            ))
            .bind(lab_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        } else {
            let (lab, rest) = reference.split_once('/').ok_or_else(|| {
                Error::invalid(format!(
                    "benchmark: {reference:?} is neither an id nor lab/name[@version]"
                ))
            })?;
            let (name, version) = match rest.split_once('@') {
                Some((n, v)) => (
                    n,
                    Some(v.parse::<i32>().map_err(|_| {
                        Error::invalid(format!(
                            "benchmark: version {v:?} in {reference:?} is not a number"
                        ))
                    })?),
                ),
                None => (rest, None),
            };
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE {visible} AND l.name = $2 AND b.name = $3 \
                   AND ($4::int IS NULL AND b.deprecated_at IS NULL OR b.version = $4) \
                 ORDER BY b.version DESC LIMIT 1"
            ))
            .bind(lab_id)
            .bind(lab)
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
        };
        from_row(&row.ok_or_else(|| Error::not_found("benchmark", reference))?)
    }

    pub async fn list_benchmarks(
        &self,
        caller: &Caller,
        f: &BenchmarkFilter,
    ) -> Result<Page<Benchmark>> {
        let limit = page_limit(f.limit)?;
        let cursor = f.page_token.as_deref().map(decode_cursor).transpose()?;
        let scope = match f.scope {
            BenchmarkScope::Visible => "(b.lab_id = $1 OR b.public)",
            BenchmarkScope::Lab => "b.lab_id = $1",
            BenchmarkScope::Public => "b.public",
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE {scope} \
               AND ($2::text IS NULL OR b.name = $2) AND ($3 OR b.deprecated_at IS NULL) \
               AND ($4::timestamptz IS NULL OR (b.created_at, b.id) < ($4, $5)) \
             ORDER BY b.created_at DESC, b.id DESC LIMIT $6"
        ))
        .bind(caller.lab_id())
        .bind(&f.name)
        .bind(f.include_deprecated)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |b| (b.created_at, b.id)))
    }

    /// Makes a version visible to every lab. Only its lab may; idempotent.
    pub async fn publish_benchmark(&self, caller: &Caller, reference: &str) -> Result<Benchmark> {
        let b = self.owned_benchmark(caller, reference).await?;
        if b.deprecated_at.is_some() {
            return Err(Error::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "benchmark {}: a deprecated version cannot be published",
                    b.reference
                ),
            ));
        }
        sqlx::query("UPDATE benchmarks SET public = true, published_at = COALESCE(published_at, now()), updated_at = now() WHERE id = $1")
            .bind(b.id)
            .execute(&self.pool)
            .await?;
        self.get_benchmark(caller, &b.id.to_string()).await
    }

    /// Marks a version deprecated (with a reason); it stays resolvable by id
    /// or exact version. Only its lab may; idempotent.
    pub async fn deprecate_benchmark(
        &self,
        caller: &Caller,
        reference: &str,
        reason: Option<&str>,
    ) -> Result<Benchmark> {
        if reason.is_some_and(|r| r.chars().count() > 1000) {
            return Err(Error::invalid("reason: must be at most 1000 characters"));
        }
        let b = self.owned_benchmark(caller, reference).await?;
        sqlx::query(
            "UPDATE benchmarks SET deprecated_at = COALESCE(deprecated_at, now()), \
               deprecation_reason = COALESCE($2, deprecation_reason), updated_at = now() WHERE id = $1",
        )
        .bind(b.id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        self.get_benchmark(caller, &b.id.to_string()).await
    }

    async fn owned_benchmark(&self, caller: &Caller, reference: &str) -> Result<Benchmark> {
        let b = self.get_benchmark(caller, reference).await?;
        let owner: Uuid = sqlx::query_scalar("SELECT lab_id FROM benchmarks WHERE id = $1")
            .bind(b.id)
            .fetch_one(&self.pool)
            .await?;
        if owner != caller.lab_id() {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "benchmark {}: only its lab ({}) may change it",
                    b.reference, b.lab
                ),
            ));
        }
        Ok(b)
    }
}

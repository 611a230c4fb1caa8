//! The metric catalogue: ids, directions, options and invariances of every
//! metric the engine computes. Pure data so that the service can validate a
//! request and list metrics without linking the numerical engine.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricOption {
    pub name: &'static str,
    pub kind: &'static str,
    #[schema(value_type = Object)]
    pub default: serde_json::Value,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricInfo {
    pub id: &'static str,
    /// `similarity` (higher is more alike) or `distance` (lower is).
    pub direction: &'static str,
    pub description: &'static str,
    pub options: Vec<MetricOption>,
    pub invariances: Vec<&'static str>,
}

pub fn metrics() -> Vec<MetricInfo> {
    vec![
        MetricInfo {
            id: "linear_cka",
            direction: "similarity",
            description: "linear centered kernel alignment (Kornblith et al. 2019): \
                ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) on column-centered stimulus x feature matrices",
            options: vec![],
            invariances: vec!["orthogonal transform", "isotropic scaling", "translation", "consistent stimulus permutation"],
        },
        MetricInfo {
            id: "rsa_correlation_spearman",
            direction: "similarity",
            description: "representational similarity: correlation-distance RDMs (1 - Pearson r between stimulus patterns), \
                upper triangles compared by Spearman rank correlation (average ranks for ties)",
            options: vec![],
            invariances: vec!["per-stimulus affine scaling", "monotone transforms of dissimilarities", "consistent stimulus permutation"],
        },
    ]
}

/// Fails with a message naming the unknown id and the known ones.
pub fn check_metric_ids(ids: &[String]) -> crate::Result<()> {
    if ids.is_empty() {
        return Err(crate::Error::invalid(
            "metrics: list is empty; name at least one metric id",
        ));
    }
    let known = metrics();
    for id in ids {
        if !known.iter().any(|m| m.id == id) {
            let names: Vec<&str> = known.iter().map(|m| m.id).collect();
            return Err(crate::Error::invalid(format!(
                "metrics: unknown metric id {id:?} (known: {})",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

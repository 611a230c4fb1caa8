//! The HTTP transport: axum handlers that decode requests into domain
//! values, call the service layer and encode its answer. No logic lives here.

mod arrays;
mod benchmarks;
mod data;
mod extract;
mod jobs;
mod labs;
mod models;
mod openapi;

use std::sync::atomic::Ordering;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub use extract::{Auth, JsonBody, QueryParams};

pub fn router(state: AppState) -> Router {
    let json_limit = state.max_json_bytes;
    let v1 = Router::new()
        .route("/labs", post(labs::create_lab).get(labs::list_labs))
        .route("/labs/{id}/keys", post(labs::create_key))
        .route(
            "/arrays",
            post(arrays::upload)
                .get(arrays::list)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/arrays/{id}", get(arrays::get_one))
        .route("/arrays/{id}/data", get(arrays::download))
        .route(
            "/stimulus-sets",
            post(data::upload_stimulus_set)
                .get(data::list_stimulus_sets)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/stimulus-sets/{id}", get(data::get_stimulus_set))
        .route("/stimulus-sets/{id}/stimuli", get(data::list_stimuli))
        .route(
            "/stimulus-sets/{id}/stimuli/{stimulus_id}/thumbnail",
            get(data::thumbnail),
        )
        .route(
            "/recordings",
            post(data::upload_recording)
                .get(data::list_recordings)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/recordings/{id}", get(data::get_recording))
        .route("/recordings/{id}/neurons", get(data::recording_neurons))
        .route("/recordings/{id}/stimuli", get(data::recording_stimuli))
        .route(
            "/benchmarks",
            post(benchmarks::create).get(benchmarks::list),
        )
        .route("/benchmarks/{reference}", get(benchmarks::get_one))
        .route("/benchmarks/{reference}/publish", post(benchmarks::publish))
        .route(
            "/benchmarks/{reference}/deprecate",
            post(benchmarks::deprecate),
        )
        .route(
            "/benchmarks/{reference}/leaderboard",
            get(models::leaderboard),
        )
        .route("/leaderboard", get(models::aggregate))
        .route(
            "/models/torchscript",
            post(models::register_torchscript).layer(DefaultBodyLimit::disable()),
        )
        .route("/models/builtin", post(models::register_builtin))
        .route("/models", get(models::list))
        .route("/models/{id}", get(models::get_one))
        .route("/models/{id}/scores", get(models::score_card))
        .route("/models/{id}/region-map", get(models::region_map))
        .route("/region-maps/{id}", get(models::region_map_artifact))
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get_one))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/jobs/{id}/result", get(jobs::result))
        .route("/metrics", get(jobs::metrics))
        .route("/openapi.json", get(openapi::spec));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(state)
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the process is up")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "serving"), (status = 503, description = "shutting down or database unreachable")))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::SeqCst) && state.service.ready().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

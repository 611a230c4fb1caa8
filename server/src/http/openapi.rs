//! `GET /v1/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "neuralign", description = "Score deep networks against brain data"),
    paths(
        super::healthz, super::readyz,
        super::labs::create_lab, super::labs::list_labs, super::labs::create_key,
        super::arrays::upload, super::arrays::list, super::arrays::get_one, super::arrays::download,
        super::jobs::submit, super::jobs::list, super::jobs::get_one, super::jobs::cancel,
        super::jobs::events, super::jobs::result, super::jobs::metrics,
        super::data::upload_stimulus_set, super::data::list_stimulus_sets, super::data::get_stimulus_set,
        super::data::list_stimuli, super::data::thumbnail,
        super::data::upload_recording, super::data::list_recordings, super::data::get_recording,
        super::data::recording_neurons, super::data::recording_stimuli,
        super::benchmarks::create, super::benchmarks::list, super::benchmarks::get_one,
        super::benchmarks::publish, super::benchmarks::deprecate,
        super::models::register_torchscript, super::models::register_builtin, super::models::list, super::models::get_one,
        super::models::score_card, super::models::region_map, super::models::region_map_artifact, super::models::leaderboard, super::models::aggregate,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

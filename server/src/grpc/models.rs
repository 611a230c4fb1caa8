//! `ModelService`: registration (TorchScript by client streaming, built-in
//! specs), models, score cards, region maps and leaderboards.

use neuralign_core::model::parse_id;
use neuralign_core::resources::{BenchmarkScore, LeaderboardEntry, Model, NewBuiltinModel};
use neuralign_core::service::TorchScriptParams;
use neuralign_core::Error;
use neuralign_proto::v1;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{limit, opt};
use super::{caller, split_upload};
use crate::error_map::to_status;
use crate::AppState;

pub struct Models(pub AppState);

fn model_to_proto(m: Model) -> v1::Model {
    let Model {
        id,
        name,
        version,
        kind,
        content_hash,
        version_hash,
        spec,
        input,
        layer_names,
        state,
        error,
        layers,
        weights_sha256,
        probe_job_id,
        created_at,
    } = m;
    v1::Model {
        id: id.to_string(),
        name,
        version,
        kind,
        content_hash,
        version_hash,
        spec_json: spec.map(|s| s.to_string()).unwrap_or_default(),
        input_json: serde_json::to_string(&input).unwrap_or_default(),
        layer_names: layer_names.unwrap_or_default(),
        state,
        error: error.unwrap_or_default(),
        layers: layers
            .into_iter()
            .map(|l| v1::ModelLayer {
                name: l.name,
                shape: l.shape,
            })
            .collect(),
        weights_sha256: weights_sha256.unwrap_or_default(),
        probe_job_id: probe_job_id.map(|j| j.to_string()).unwrap_or_default(),
        created_at: created_at.to_rfc3339(),
    }
}

fn score_to_proto(b: BenchmarkScore) -> v1::BenchmarkScore {
    let BenchmarkScore {
        benchmark_id,
        benchmark,
        region,
        metric,
        job_id,
        layer,
        raw,
        ceiling,
        normalized,
        ci,
        per_neuron_array_id,
        seeds,
        engine_version,
        libtorch_version,
        curve,
        scored_at,
    } = b;
    v1::BenchmarkScore {
        benchmark_id: benchmark_id.to_string(),
        benchmark,
        region: region.unwrap_or_default(),
        metric,
        job_id: job_id.to_string(),
        layer,
        raw,
        ceiling,
        normalized,
        ci: ci.map(|c| c.to_vec()).unwrap_or_default(),
        per_neuron_array_id: per_neuron_array_id
            .map(|a| a.to_string())
            .unwrap_or_default(),
        seeds_json: seeds.to_string(),
        engine_version,
        libtorch_version,
        curve: curve
            .into_iter()
            .map(|l| v1::LayerScore {
                layer: l.layer,
                time_bin: l.time_bin,
                selection_value: l.selection_value,
                raw: l.raw,
                ceiling: l.ceiling,
                normalized: l.normalized,
                selected: l.selected,
            })
            .collect(),
        scored_at: scored_at.to_rfc3339(),
    }
}

fn entry_to_proto(e: LeaderboardEntry) -> v1::LeaderboardEntry {
    let LeaderboardEntry {
        rank,
        lab,
        model_id,
        model,
        layer,
        score,
        raw,
        ci,
        benchmarks,
        job_id,
        scored_at,
    } = e;
    v1::LeaderboardEntry {
        rank,
        lab,
        model_id: model_id.to_string(),
        model,
        layer: layer.unwrap_or_default(),
        score,
        raw,
        ci: ci.map(|c| c.to_vec()).unwrap_or_default(),
        benchmarks,
        job_id: job_id.map(|j| j.to_string()).unwrap_or_default(),
        scored_at: scored_at.to_rfc3339(),
    }
}

#[tonic::async_trait]
impl v1::model_service_server::ModelService for Models {
    async fn register_torch_script(
        &self,
        req: Request<Streaming<v1::RegisterTorchScriptRequest>>,
    ) -> Result<Response<v1::Model>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let (options, body) =
            split_upload(req.into_inner(), |m: v1::RegisterTorchScriptRequest| {
                let v1::RegisterTorchScriptRequest { options, data } = m;
                (options, data)
            })
            .await?;
        let v1::TorchScriptOptions {
            name,
            input_json,
            layer_names,
            no_wait,
        } = options;
        let params = TorchScriptParams {
            name: opt(name),
            input: opt(input_json),
            layer_names: (!layer_names.is_empty()).then(|| layer_names.join(",")),
            wait: Some(!no_wait),
        };
        let up = params.into_upload().map_err(to_status)?;
        let svc = &self.0.service;
        let m = svc
            .register_torchscript(&caller, up, body)
            .await
            .map_err(to_status)?;
        let m = if no_wait {
            m
        } else {
            svc.await_probe(&caller, m, neuralign_core::service::PROBE_WAIT)
                .await
                .map_err(to_status)?
        };
        Ok(Response::new(model_to_proto(m)))
    }

    async fn register_builtin(
        &self,
        req: Request<v1::RegisterBuiltinRequest>,
    ) -> Result<Response<v1::Model>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::RegisterBuiltinRequest {
            name,
            spec_json,
            input_json,
            no_wait,
        } = req.into_inner();
        let spec: serde_json::Value = serde_json::from_str(&spec_json)
            .map_err(|e| to_status(Error::invalid(format!("spec_json: not JSON ({e})"))))?;
        let input = super::convert::optional_json("input_json", &input_json).map_err(to_status)?;
        let svc = &self.0.service;
        let m = svc
            .register_builtin(&caller, NewBuiltinModel { name, spec, input })
            .await
            .map_err(to_status)?;
        let m = if no_wait {
            m
        } else {
            svc.await_probe(&caller, m, neuralign_core::service::PROBE_WAIT)
                .await
                .map_err(to_status)?
        };
        Ok(Response::new(model_to_proto(m)))
    }

    async fn get_model(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::Model>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        Ok(Response::new(model_to_proto(
            self.0
                .service
                .get_model(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn list_models(
        &self,
        req: Request<v1::ListPageRequest>,
    ) -> Result<Response<v1::ListModelsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListPageRequest {
            limit: l,
            page_token,
        } = req.into_inner();
        let page = self
            .0
            .service
            .list_models(&caller, limit(l), opt(page_token).as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListModelsResponse {
            models: page.items.into_iter().map(model_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_score_card(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::ScoreCard>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        let card = self
            .0
            .service
            .score_card(&caller, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ScoreCard {
            model: Some(model_to_proto(card.model)),
            benchmarks: card.benchmarks.into_iter().map(score_to_proto).collect(),
        }))
    }

    async fn get_region_map(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::RegionMap>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let model = parse_id("id", &id).map_err(to_status)?;
        let map = self
            .0
            .service
            .region_layer_map(&caller, model)
            .await
            .map_err(to_status)?;
        Ok(Response::new(region_map_to_proto(map)))
    }

    async fn get_region_map_artifact(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::RegionMap>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        let map = self
            .0
            .service
            .get_region_map(&caller, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(region_map_to_proto(map)))
    }

    async fn get_leaderboard(
        &self,
        req: Request<v1::LeaderboardRequest>,
    ) -> Result<Response<v1::Leaderboard>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::LeaderboardRequest { benchmarks } = req.into_inner();
        let svc = &self.0.service;
        let entries = match benchmarks.as_slice() {
            [one] => svc.leaderboard(&caller, one).await,
            refs => svc.aggregate_leaderboard(&caller, refs).await,
        }
        .map_err(to_status)?;
        Ok(Response::new(v1::Leaderboard {
            benchmarks,
            entries: entries.into_iter().map(entry_to_proto).collect(),
        }))
    }
}

fn region_map_to_proto(m: neuralign_core::resources::RegionMap) -> v1::RegionMap {
    v1::RegionMap {
        model: m.model.to_string(),
        regions: m
            .regions
            .into_iter()
            .map(|r| v1::RegionLayer {
                region: r.region,
                layer: r.layer,
                score: r.score,
                benchmarks: r.benchmarks,
            })
            .collect(),
        id: m.id.map(|i| i.to_string()).unwrap_or_default(),
        job_id: m.job_id.map(|i| i.to_string()).unwrap_or_default(),
        created_at: m.created_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
    }
}

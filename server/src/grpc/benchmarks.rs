//! `BenchmarkService`: create, get, list, publish, deprecate.

use neuralign_core::model::parse_choice;
use neuralign_core::resources::{Benchmark, NewBenchmark};
use neuralign_core::service::{BenchmarkFilter, BenchmarkScope};
use neuralign_core::Error;
use neuralign_proto::v1;
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{json_text, limit, metric_request, metric_to_proto, opt, optional_json};
use crate::error_map::to_status;
use crate::AppState;

pub struct Benchmarks(pub AppState);

fn to_proto(b: Benchmark) -> v1::Benchmark {
    let Benchmark {
        id,
        reference,
        lab,
        name,
        version,
        description,
        recording_id,
        metric,
        ceiling,
        neuron_filter,
        neurons_kept,
        splits,
        public,
        published_at,
        deprecated_at,
        deprecation_reason,
        created_at,
    } = b;
    v1::Benchmark {
        id: id.to_string(),
        reference,
        lab,
        name,
        version,
        description,
        recording_id: recording_id.to_string(),
        metric: Some(metric_to_proto(metric)),
        ceiling_json: json_text(&ceiling),
        neuron_filter_json: json_text(&neuron_filter),
        neurons_kept,
        splits_json: json_text(&splits),
        public,
        published_at: published_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        deprecated_at: deprecated_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        deprecation_reason: deprecation_reason.unwrap_or_default(),
        created_at: created_at.to_rfc3339(),
    }
}

fn from_proto(r: v1::CreateBenchmarkRequest) -> Result<NewBenchmark, Error> {
    let v1::CreateBenchmarkRequest {
        name,
        description,
        recording,
        metric,
        ceiling_json,
        neuron_filter_json,
        splits_json,
    } = r;
    Ok(NewBenchmark {
        name,
        description,
        recording: neuralign_core::model::parse_id("recording", &recording)?,
        metric: metric_request(
            "metric",
            metric.ok_or_else(|| Error::invalid("metric: required"))?,
        )?,
        ceiling: optional_json("ceiling_json", &ceiling_json)?,
        neuron_filter: optional_json("neuron_filter_json", &neuron_filter_json)?,
        splits: optional_json("splits_json", &splits_json)?,
    })
}

#[tonic::async_trait]
impl v1::benchmark_service_server::BenchmarkService for Benchmarks {
    async fn create_benchmark(
        &self,
        req: Request<v1::CreateBenchmarkRequest>,
    ) -> Result<Response<v1::Benchmark>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let new = from_proto(req.into_inner()).map_err(to_status)?;
        let b = self
            .0
            .service
            .create_benchmark(&caller, new)
            .await
            .map_err(to_status)?;
        Ok(Response::new(to_proto(b)))
    }

    async fn get_benchmark(
        &self,
        req: Request<v1::BenchmarkRef>,
    ) -> Result<Response<v1::Benchmark>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::BenchmarkRef { reference } = req.into_inner();
        let b = self
            .0
            .service
            .get_benchmark(&caller, &reference)
            .await
            .map_err(to_status)?;
        Ok(Response::new(to_proto(b)))
    }

    async fn list_benchmarks(
        &self,
        req: Request<v1::ListBenchmarksRequest>,
    ) -> Result<Response<v1::ListBenchmarksResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListBenchmarksRequest {
            scope,
            name,
            include_deprecated,
            limit,
            page_token,
        } = req.into_inner();
        let scope: BenchmarkScope = parse_choice("scope", Some(&scope), "visible, lab, public")
            .map_err(to_status)?
            .unwrap_or_default();
        let f = BenchmarkFilter {
            scope,
            name: opt(name),
            include_deprecated,
            limit: self::limit(limit),
            page_token: opt(page_token),
        };
        let page = self
            .0
            .service
            .list_benchmarks(&caller, &f)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListBenchmarksResponse {
            benchmarks: page.items.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn publish_benchmark(
        &self,
        req: Request<v1::BenchmarkRef>,
    ) -> Result<Response<v1::Benchmark>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::BenchmarkRef { reference } = req.into_inner();
        let b = self
            .0
            .service
            .publish_benchmark(&caller, &reference)
            .await
            .map_err(to_status)?;
        Ok(Response::new(to_proto(b)))
    }

    async fn deprecate_benchmark(
        &self,
        req: Request<v1::DeprecateBenchmarkRequest>,
    ) -> Result<Response<v1::Benchmark>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::DeprecateBenchmarkRequest { reference, reason } = req.into_inner();
        let b = self
            .0
            .service
            .deprecate_benchmark(&caller, &reference, opt(reason).as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(to_proto(b)))
    }
}

//! `JobService`: submit, read, list, cancel, events, live watch, metrics.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use neuralign_core::architecture::Pooling;
use neuralign_core::model::{
    parse_choice, parse_id, CompareSpec, JobFilter, JobSpec, JobState, NewJob, NoopSpec, Precision,
    ScoreSpec,
};
use neuralign_core::Error;
use neuralign_proto::v1;
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, metric_request, opt, optional_json};
use crate::error_map::to_status;
use crate::AppState;

pub struct Jobs(pub AppState);

fn spec_from_proto(spec: Option<v1::submit_job_request::Spec>) -> Result<JobSpec, Error> {
    use v1::submit_job_request::Spec;
    match spec {
        Some(Spec::Compare(v1::CompareSpec {
            a,
            b,
            metrics,
            bootstrap_json,
            permutation_json,
            ceiling_json,
            reduce_json,
            precision,
        })) => Ok(JobSpec::Compare(CompareSpec {
            a: parse_id("compare.a", &a)?,
            b: parse_id("compare.b", &b)?,
            metrics: if metrics.is_empty() {
                CompareSpec::default_metrics()
            } else {
                metrics
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| metric_request(&format!("compare.metrics[{i}]"), m))
                    .collect::<Result<_, _>>()?
            },
            bootstrap: optional_json("compare.bootstrap_json", &bootstrap_json)?,
            permutation: optional_json("compare.permutation_json", &permutation_json)?,
            ceiling: optional_json("compare.ceiling_json", &ceiling_json)?,
            reduce: optional_json("compare.reduce_json", &reduce_json)?,
            precision: match precision.as_str() {
                "" | "float64" => Precision::Float64,
                "float32" => Precision::Float32,
                other => {
                    return Err(Error::invalid(format!(
                        "compare.precision: {other:?} is not float64 or float32"
                    )))
                }
            },
        })),
        Some(Spec::Noop(v1::NoopSpec {
            duration_ms,
            fail_attempts,
        })) => Ok(JobSpec::Noop(NoopSpec {
            duration_ms,
            fail_attempts,
        })),
        Some(Spec::Score(v1::ScoreSpec {
            model,
            benchmarks,
            pooling,
            layers,
            reduce_json,
            bootstrap_json,
            batch_size,
        })) => Ok(JobSpec::Score(ScoreSpec {
            model: parse_id("score.model", &model)?,
            benchmarks,
            pooling: parse_choice::<Pooling>("score.pooling", Some(&pooling), "avg, max, flatten")?
                .unwrap_or_default(),
            layers: (!layers.is_empty()).then_some(layers),
            reduce: optional_json("score.reduce_json", &reduce_json)?,
            bootstrap: optional_json("score.bootstrap_json", &bootstrap_json)?,
            batch_size: (batch_size != 0).then_some(batch_size as usize),
        })),
        None => Err(Error::invalid(
            "spec: missing; set one of compare, noop, score",
        )),
    }
}

#[tonic::async_trait]
impl v1::job_service_server::JobService for Jobs {
    async fn submit_job(
        &self,
        req: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::SubmitJobRequest {
            spec,
            priority,
            max_attempts,
            idempotency_key,
        } = req.into_inner();
        let job = NewJob {
            spec: spec_from_proto(spec).map_err(to_status)?,
            priority,
            max_attempts: (max_attempts != 0).then_some(max_attempts),
            idempotency_key: opt(idempotency_key),
        };
        let (job, _) = self
            .0
            .service
            .submit_job(&caller, job)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::job(job)))
    }

    async fn get_job(&self, req: Request<v1::GetJobRequest>) -> Result<Response<v1::Job>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetJobRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        Ok(Response::new(convert::job(
            self.0
                .service
                .get_job(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn list_jobs(
        &self,
        req: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListJobsRequest {
            state,
            kind,
            limit,
            page_token,
        } = req.into_inner();
        let filter = JobFilter {
            state: opt(state)
                .as_deref()
                .map(JobState::parse)
                .transpose()
                .map_err(to_status)?,
            kind: opt(kind),
            limit: convert::limit(limit),
            page_token: opt(page_token),
        };
        let page = self
            .0
            .service
            .list_jobs(&caller, &filter)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListJobsResponse {
            jobs: page.items.into_iter().map(convert::job).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn cancel_job(
        &self,
        req: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetJobRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        Ok(Response::new(convert::job(
            self.0
                .service
                .cancel_job(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn list_job_events(
        &self,
        req: Request<v1::ListJobEventsRequest>,
    ) -> Result<Response<v1::ListJobEventsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListJobEventsRequest { id, after_event_id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        let events = self
            .0
            .service
            .job_events(&caller, id, after_event_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListJobEventsResponse {
            events: events.into_iter().map(convert::event).collect(),
        }))
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<v1::JobEvent, Status>> + Send>>;

    async fn watch_job(
        &self,
        req: Request<v1::ListJobEventsRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListJobEventsRequest { id, after_event_id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        self.0
            .service
            .get_job(&caller, id)
            .await
            .map_err(to_status)?;
        let stream = self.0.service.watch_job(&caller, id, after_event_id);
        Ok(Response::new(Box::pin(
            stream.map(|r| r.map(convert::event).map_err(to_status)),
        )))
    }

    async fn list_metrics(
        &self,
        req: Request<v1::ListMetricsRequest>,
    ) -> Result<Response<v1::ListMetricsResponse>, Status> {
        let _caller = caller(&self.0, req.metadata()).await?;
        let v1::ListMetricsRequest {} = req.into_inner();
        let metrics = self
            .0
            .service
            .metrics()
            .into_iter()
            .map(|m| v1::Metric {
                id: m.id.to_string(),
                direction: m.direction.to_string(),
                description: m.description.to_string(),
                options: m
                    .options
                    .into_iter()
                    .map(|o| v1::MetricOption {
                        name: o.name.to_string(),
                        kind: o.kind.to_string(),
                        default_json: o.default.to_string(),
                        description: o.description.to_string(),
                    })
                    .collect(),
                invariances: m.invariances.into_iter().map(str::to_string).collect(),
            })
            .collect();
        Ok(Response::new(v1::ListMetricsResponse { metrics }))
    }
}

//! The gRPC API through a real tonic client: upload by client streaming,
//! submit, watch by server streaming, read the result; auth and errors map
//! to gRPC status codes; health and reflection answer.

use futures::StreamExt;
use neuralign_proto::v1;
use serde_json::Value;
use sqlx::PgPool;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::common::{self, npy, values};
use crate::reference;

type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

fn with_key(key: Option<String>) -> Auth {
    Box::new(move |mut req: tonic::Request<()>| {
        if let Some(k) = &key {
            req.metadata_mut().insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {k}")).unwrap(),
            );
        }
        Ok(req)
    })
}

async fn clients(
    addr: &str,
    key: Option<&str>,
) -> (
    v1::array_service_client::ArrayServiceClient<InterceptedService<Channel, Auth>>,
    v1::job_service_client::JobServiceClient<InterceptedService<Channel, Auth>>,
) {
    let channel = Channel::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let key = key.map(str::to_string);
    (
        v1::array_service_client::ArrayServiceClient::with_interceptor(
            channel.clone(),
            with_key(key.clone()),
        ),
        v1::job_service_client::JobServiceClient::with_interceptor(channel, with_key(key)),
    )
}

fn upload_stream(
    name: &str,
    bytes: Vec<u8>,
    piece: usize,
) -> impl futures::Stream<Item = v1::UploadArrayRequest> {
    let name = name.to_string();
    let pieces: Vec<v1::UploadArrayRequest> = bytes
        .chunks(piece)
        .enumerate()
        .map(|(i, c)| v1::UploadArrayRequest {
            name: if i == 0 { name.clone() } else { String::new() },
            data: c.to_vec().into(),
        })
        .collect();
    futures::stream::iter(pieces)
}

#[sqlx::test(migrations = false)]
async fn compare_over_grpc_matches_the_float64_reference(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    let (_, key) = s.lab("lab-g").await;
    let (mut arrays, mut jobs) = clients(&s.grpc, Some(&key)).await;
    let (n, d1, d2) = (30, 40, 6);
    let va = values(n * d1, 11);
    let vb = values(n * d2, 12);
    let a = arrays
        .upload_array(upload_stream("a", npy("<f8", &[n, d1], &va), 1000))
        .await
        .unwrap()
        .into_inner();
    let b = arrays
        .upload_array(upload_stream("b", npy("<f8", &[n, d2], &vb), 333))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.shape, vec![n as u64, d1 as u64]);
    let spec = v1::submit_job_request::Spec::Compare(v1::CompareSpec {
        a: a.id.clone(),
        b: b.id.clone(),
        metrics: vec![],
        bootstrap_json: r#"{"samples": 50, "seed": 3}"#.into(),
        ..Default::default()
    });
    let job = jobs
        .submit_job(v1::SubmitJobRequest {
            spec: Some(spec),
            priority: 0,
            max_attempts: 0,
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch = jobs
        .watch_job(v1::ListJobEventsRequest {
            id: job.id.clone(),
            after_event_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut states = Vec::new();
    while let Some(e) = watch.next().await {
        let e = e.unwrap();
        if !e.state.is_empty() {
            states.push(e.state);
        }
    }
    assert_eq!(states, vec!["queued", "running", "succeeded"]);
    let done = jobs
        .get_job(v1::GetJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let result: Value = serde_json::from_str(&done.result_json).unwrap();
    let (xa, xb) = (
        reference::from_flat(&va, n, d1),
        reference::from_flat(&vb, n, d2),
    );
    let got = |m: &str| {
        result["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == m)
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert!((got("linear_cka") - reference::linear_cka(&xa, &xb)).abs() < 1e-9);
    assert!((got("rsa") - reference::rsa_spearman(&xa, &xb)).abs() < 1e-9);
    for r in result["results"].as_array().unwrap() {
        let ci = &r["bootstrap"]["ci"];
        assert!(ci[0].as_f64().unwrap() <= ci[1].as_f64().unwrap(), "{r}");
        assert_eq!(
            (
                r["bootstrap"]["samples"].as_u64(),
                r["bootstrap"]["seed"].as_u64()
            ),
            (Some(50), Some(3))
        );
    }
    // Download streams the same bytes back.
    let mut down = arrays
        .download_array(v1::GetArrayRequest { id: b.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(c) = down.next().await {
        bytes.extend_from_slice(&c.unwrap().data);
    }
    assert_eq!(bytes, npy("<f8", &[n, d2], &vb));
    let listed = jobs
        .list_jobs(v1::ListJobsRequest {
            state: "succeeded".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    s.stop().await;
}

#[sqlx::test(migrations = false)]
async fn grpc_statuses_for_auth_and_bad_input(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    let (_, key) = s.lab("lab-g").await;
    let (_, mut anon) = clients(&s.grpc, None).await;
    let e = anon
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let (_, mut wrong) = clients(&s.grpc, Some("nl_wrong")).await;
    assert_eq!(
        wrong
            .list_metrics(v1::ListMetricsRequest {})
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );

    let (mut arrays, mut jobs) = clients(&s.grpc, Some(&key)).await;
    let e = arrays
        .upload_array(upload_stream("t", b"definitely not npy".to_vec(), 4))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("magic"), "{}", e.message());
    assert_eq!(
        e.metadata().get("x-neuralign-code").unwrap(),
        "invalid_argument"
    );
    let e = jobs
        .get_job(v1::GetJobRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = jobs
        .get_job(v1::GetJobRequest { id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = jobs
        .submit_job(v1::SubmitJobRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("spec"));
    assert_eq!(s.count("jobs").await, 0);
    assert_eq!(s.settled_count("blobs", 0).await, 0);
    let metrics = jobs
        .list_metrics(v1::ListMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(metrics.metrics.iter().any(|m| m.id == "linear_cka"));

    // Standard health service answers for the API services.
    let channel = Channel::from_shared(s.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "neuralign.v1.JobService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Server reflection lists the API, so grpcurl-style tools work.
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let channel = Channel::from_shared(s.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "neuralign.v1.JobService",
        "neuralign.v1.ArrayService",
        "neuralign.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "reflection lists {want}: {names:?}"
        );
    }
    s.stop().await;
}

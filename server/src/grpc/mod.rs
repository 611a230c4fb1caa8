//! The gRPC transport: tonic services that decode proto messages into
//! domain values, call the service layer and encode its answer. Proto
//! messages are destructured field by field so that a new field fails to
//! compile until it is handled.

mod admin;
mod arrays;
mod benchmarks;
mod convert;
mod data;
mod jobs;
mod models;

use bytes::Bytes;
use futures::StreamExt;
use neuralign_core::service::ByteStream;
use neuralign_core::{Caller, Error};
use neuralign_proto::v1;
use tonic::service::Routes;
use tonic::{Status, Streaming};

use crate::error_map::to_status;
use crate::AppState;

/// The API services plus health and reflection.
pub async fn routes(state: AppState) -> Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<v1::job_service_server::JobServiceServer<jobs::Jobs>>()
        .await;
    reporter
        .set_serving::<v1::array_service_server::ArrayServiceServer<arrays::Arrays>>()
        .await;
    reporter
        .set_serving::<v1::admin_service_server::AdminServiceServer<admin::Admin>>()
        .await;
    reporter
        .set_serving::<v1::data_service_server::DataServiceServer<data::Data>>()
        .await;
    reporter
        .set_serving::<v1::model_service_server::ModelServiceServer<models::Models>>()
        .await;
    reporter
        .set_serving::<v1::benchmark_service_server::BenchmarkServiceServer<benchmarks::Benchmarks>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("descriptor sets are valid");
    let mut routes = Routes::new(health);
    routes = routes
        .add_service(reflection)
        .add_service(v1::admin_service_server::AdminServiceServer::new(
            admin::Admin(state.clone()),
        ))
        .add_service(
            v1::array_service_server::ArrayServiceServer::new(arrays::Arrays(state.clone()))
                .max_decoding_message_size(16 << 20),
        )
        .add_service(
            v1::data_service_server::DataServiceServer::new(data::Data(state.clone()))
                .max_decoding_message_size(16 << 20),
        )
        .add_service(
            v1::model_service_server::ModelServiceServer::new(models::Models(state.clone()))
                .max_decoding_message_size(16 << 20),
        )
        .add_service(v1::benchmark_service_server::BenchmarkServiceServer::new(
            benchmarks::Benchmarks(state.clone()),
        ))
        .add_service(v1::job_service_server::JobServiceServer::new(jobs::Jobs(
            state,
        )));
    routes
}

/// A client-streaming upload: the first message's options (required) and
/// a stream of every message's bytes.
pub(super) async fn split_upload<M, O>(
    mut incoming: Streaming<M>,
    parts: fn(M) -> (Option<O>, Bytes),
) -> Result<(O, ByteStream), Status>
where
    M: Send + 'static,
    O: Send + 'static,
{
    let first = incoming
        .message()
        .await?
        .ok_or_else(|| to_status(Error::invalid("upload: the stream carried no message")))?;
    let (options, data) = parts(first);
    let options = options
        .ok_or_else(|| to_status(Error::invalid("options: required in the first message")))?;
    let head = futures::stream::iter([Ok::<Bytes, Error>(data)]);
    let rest = incoming.map(move |m| match m {
        Ok(m) => Ok(parts(m).1),
        Err(s) => Err(Error::invalid(format!(
            "upload: stream interrupted: {}",
            s.message()
        ))),
    });
    Ok((options, Box::pin(head.chain(rest))))
}

/// The caller behind the `authorization: Bearer <key>` metadata entry.
async fn caller(
    state: &AppState,
    md: &tonic::metadata::MetadataMap,
) -> Result<Caller, tonic::Status> {
    let token = match md.get("authorization") {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| to_status(Error::unauthenticated("authorization: not valid text")))?;
            Some(
                v.strip_prefix("Bearer ")
                    .ok_or_else(|| {
                        to_status(Error::unauthenticated(
                            "authorization: expected `Bearer <key>`",
                        ))
                    })?
                    .to_string(),
            )
        }
    };
    state
        .service
        .authenticate(token.as_deref())
        .await
        .map_err(to_status)
}

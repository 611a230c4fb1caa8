//! `ArrayService`: client-streaming upload, server-streaming download.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use neuralign_core::model::parse_id;
use neuralign_proto::v1;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, opt};
use super::{caller, split_upload};
use crate::error_map::to_status;
use crate::AppState;

pub struct Arrays(pub AppState);

#[tonic::async_trait]
impl v1::array_service_server::ArrayService for Arrays {
    async fn upload_array(
        &self,
        req: Request<Streaming<v1::UploadArrayRequest>>,
    ) -> Result<Response<v1::Array>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        // The name is optional: the first message always "has" one.
        let (name, body) = split_upload(req.into_inner(), |m: v1::UploadArrayRequest| {
            let v1::UploadArrayRequest { name, data } = m;
            (Some(name), data)
        })
        .await?;
        let meta = self
            .0
            .service
            .upload_array(&caller, &name, body)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::array(meta)))
    }

    async fn get_array(
        &self,
        req: Request<v1::GetArrayRequest>,
    ) -> Result<Response<v1::Array>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetArrayRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        Ok(Response::new(convert::array(
            self.0
                .service
                .get_array(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn list_arrays(
        &self,
        req: Request<v1::ListArraysRequest>,
    ) -> Result<Response<v1::ListArraysResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListArraysRequest { limit, page_token } = req.into_inner();
        let limit = convert::limit(limit);
        let page = self
            .0
            .service
            .list_arrays(&caller, limit, opt(page_token).as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListArraysResponse {
            arrays: page.items.into_iter().map(convert::array).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    type DownloadArrayStream = Pin<Box<dyn Stream<Item = Result<v1::DataChunk, Status>> + Send>>;

    async fn download_array(
        &self,
        req: Request<v1::GetArrayRequest>,
    ) -> Result<Response<Self::DownloadArrayStream>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetArrayRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        let (_, stream) = self
            .0
            .service
            .download_array(&caller, id)
            .await
            .map_err(to_status)?;
        let out = stream.map(|r| r.map(|data| v1::DataChunk { data }).map_err(to_status));
        Ok(Response::new(Box::pin(out)))
    }
}

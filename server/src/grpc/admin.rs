//! `AdminService`: labs and keys.

use neuralign_core::model::parse_id;
use neuralign_proto::v1;
use tonic::{Request, Response, Status};

use super::{caller, convert};
use crate::error_map::to_status;
use crate::AppState;

pub struct Admin(pub AppState);

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for Admin {
    async fn create_lab(
        &self,
        req: Request<v1::CreateLabRequest>,
    ) -> Result<Response<v1::CreateLabResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::CreateLabRequest {
            name,
            max_running_jobs,
        } = req.into_inner();
        let max = (max_running_jobs != 0).then_some(max_running_jobs);
        let (lab, api_key) = self
            .0
            .service
            .create_lab(&caller, &name, max)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::CreateLabResponse {
            lab: Some(convert::lab(lab)),
            api_key,
        }))
    }

    async fn list_labs(
        &self,
        req: Request<v1::ListLabsRequest>,
    ) -> Result<Response<v1::ListLabsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListLabsRequest {} = req.into_inner();
        let labs = self.0.service.list_labs(&caller).await.map_err(to_status)?;
        Ok(Response::new(v1::ListLabsResponse {
            labs: labs.into_iter().map(convert::lab).collect(),
        }))
    }

    async fn create_api_key(
        &self,
        req: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::CreateApiKeyRequest { lab_id } = req.into_inner();
        let lab_id = parse_id("lab_id", &lab_id).map_err(to_status)?;
        let (key_id, api_key) = self
            .0
            .service
            .create_api_key(&caller, lab_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::CreateApiKeyResponse {
            api_key,
            key_id: key_id.to_string(),
        }))
    }
}

//! `probe_model`: loads a newly registered model on this worker's device,
//! runs a two-stimulus probe batch through the declared preprocessing and
//! records every layer's name and per-stimulus shape, or the error that
//! makes the registration fail. Built-in models also store their weights as
//! a safetensors checkpoint with its hash.

use neuralign_core::blobs::read_all;
use neuralign_core::model::ProbeModelSpec;
use neuralign_core::resources::ModelLayer;
use neuralign_core::service::ProbeOutcome;
use neuralign_engine::models::extract::preprocess;
use neuralign_engine::models::LayerModel;
use neuralign_engine::EngineError;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{models, JobContext, JobError, JobKind, Step};

pub struct Probe;

#[derive(Serialize)]
pub struct ProbeOutput {
    pub model: uuid::Uuid,
    pub layers: Vec<ModelLayer>,
}

impl JobKind for Probe {
    const KIND: &'static str = "probe_model";
    type Spec = ProbeModelSpec;
    type Output = ProbeOutput;

    async fn run(ctx: JobContext, spec: ProbeModelSpec) -> Result<Step<ProbeOutput>, JobError> {
        let svc = &ctx.service;
        let src = svc.model_source(spec.model).await?;
        let file = match src.file_blob {
            Some(b) => Some(read_all(svc.pool(), b).await?),
            None => None,
        };
        let (model, device) = (src.model.clone(), ctx.device);
        let probed = ctx
            .compute
            .run(move || -> Result<_, EngineError> {
                let _guard = tch::no_grad_guard();
                let m = models::load(&model, file.as_deref(), None, device)?;
                let x = preprocess(&models::probe_stimuli(&model.input)?, &model.input)?
                    .to_device(device);
                let layers: Vec<ModelLayer> = m
                    .forward_layers(&x)?
                    .into_iter()
                    .map(|(name, t)| ModelLayer {
                        name,
                        shape: t.size()[1..].to_vec(),
                    })
                    .collect();
                let (weights, checkpoint) = match &m {
                    LayerModel::Builtin(b) => {
                        let bytes = b.checkpoint()?;
                        (Some(hex::encode(Sha256::digest(&bytes))), Some(bytes))
                    }
                    LayerModel::Script(_) => (None, None),
                };
                Ok((layers, weights, checkpoint))
            })
            .await?;
        match probed {
            Ok((layers, weights_sha256, checkpoint)) => {
                svc.finish_probe(
                    spec.model,
                    ProbeOutcome::Ready {
                        layers: layers.clone(),
                        weights_sha256,
                        checkpoint,
                    },
                )
                .await?;
                Ok(Step::Done(ProbeOutput {
                    model: spec.model,
                    layers,
                }))
            }
            Err(e) => {
                let msg = e.to_string();
                svc.finish_probe(spec.model, ProbeOutcome::Failed(msg.clone()))
                    .await?;
                Err(JobError::Fatal(msg))
            }
        }
    }
}

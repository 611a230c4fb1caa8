//! `DataService`: stimulus sets and recordings (client-streaming uploads
//! whose first message carries the options), their metadata, stimuli,
//! thumbnails and neurons.

use neuralign_core::model::parse_id;
use neuralign_core::resources::{Recording, StimulusSet};
use neuralign_core::service::{RecordingParams, StimulusSetParams};
use neuralign_proto::v1;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{limit, opt};
use super::{caller, split_upload};
use crate::error_map::to_status;
use crate::AppState;

pub struct Data(pub AppState);

fn set_to_proto(s: StimulusSet) -> v1::StimulusSet {
    let StimulusSet {
        id,
        name,
        kind,
        count,
        array_id,
        shape,
        dtype,
        source,
        extra_columns,
        has_labels,
        sha256,
        created_at,
    } = s;
    v1::StimulusSet {
        id: id.to_string(),
        name,
        kind,
        count,
        array_id: array_id.to_string(),
        shape,
        dtype,
        source_json: source.to_string(),
        extra_columns,
        has_labels,
        sha256,
        created_at: created_at.to_rfc3339(),
    }
}

fn recording_to_proto(r: Recording) -> v1::Recording {
    let Recording {
        id,
        name,
        stimulus_set_id,
        array_id,
        shape,
        dtype,
        meta,
        repetitions,
        stimuli,
        neurons,
        time_bins,
        trial_averaged,
        nan_count,
        reliability,
        source,
        created_at,
    } = r;
    v1::Recording {
        id: id.to_string(),
        name,
        stimulus_set_id: stimulus_set_id.to_string(),
        array_id: array_id.to_string(),
        shape,
        dtype,
        region: meta.region.unwrap_or_default(),
        species: meta.species.unwrap_or_default(),
        subject: meta.subject.unwrap_or_default(),
        session: meta.session.unwrap_or_default(),
        modality: meta
            .modality
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        units: meta.units.unwrap_or_default(),
        bin_size_ms: meta.bin_size_ms,
        repetitions,
        stimuli,
        neurons,
        time_bins,
        trial_averaged,
        nan_count,
        reliability: Some(v1::Reliability {
            method: reliability.method,
            median: reliability.median,
            defined: reliability.defined,
            above_half: reliability.above_half,
        }),
        source_json: source.to_string(),
        created_at: created_at.to_rfc3339(),
    }
}

fn stimulus_params(o: v1::StimulusSetOptions) -> StimulusSetParams {
    let v1::StimulusSetOptions {
        name,
        format,
        kind,
        layout,
        key,
        dataset,
        ids_dataset,
        labels_dataset,
        resize,
        resize_filter,
    } = o;
    StimulusSetParams {
        name: opt(name),
        format: opt(format),
        kind: opt(kind),
        layout: opt(layout),
        key: opt(key),
        dataset: opt(dataset),
        ids_dataset: opt(ids_dataset),
        labels_dataset: opt(labels_dataset),
        resize: opt(resize),
        resize_filter: opt(resize_filter),
    }
}

fn recording_params(o: v1::RecordingOptions) -> RecordingParams {
    let v1::RecordingOptions {
        name,
        stimulus_set,
        region,
        species,
        subject,
        session,
        modality,
        units,
        bin_size_ms,
        format,
        key,
        dataset,
        stimulus_ids_dataset,
        neuron_ids_dataset,
        nan_policy,
        intervals,
        stimulus_column,
        window_start,
        window_end,
        bin_size,
    } = o;
    RecordingParams {
        name: opt(name),
        stimulus_set: opt(stimulus_set),
        region: opt(region),
        species: opt(species),
        subject: opt(subject),
        session: opt(session),
        modality: opt(modality),
        units: opt(units),
        bin_size_ms,
        format: opt(format),
        key: opt(key),
        dataset: opt(dataset),
        stimulus_ids_dataset: opt(stimulus_ids_dataset),
        neuron_ids_dataset: opt(neuron_ids_dataset),
        nan_policy: opt(nan_policy),
        intervals: opt(intervals),
        stimulus_column: opt(stimulus_column),
        window_start,
        window_end,
        bin_size,
    }
}

#[tonic::async_trait]
impl v1::data_service_server::DataService for Data {
    async fn upload_stimulus_set(
        &self,
        req: Request<Streaming<v1::UploadStimulusSetRequest>>,
    ) -> Result<Response<v1::StimulusSet>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let (options, body) = split_upload(req.into_inner(), |m: v1::UploadStimulusSetRequest| {
            let v1::UploadStimulusSetRequest { options, data } = m;
            (options, data)
        })
        .await?;
        let up = stimulus_params(options).into_upload().map_err(to_status)?;
        let set = self
            .0
            .service
            .upload_stimulus_set(&caller, up, body)
            .await
            .map_err(to_status)?;
        Ok(Response::new(set_to_proto(set)))
    }

    async fn get_stimulus_set(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::StimulusSet>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        Ok(Response::new(set_to_proto(
            self.0
                .service
                .get_stimulus_set(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn list_stimulus_sets(
        &self,
        req: Request<v1::ListPageRequest>,
    ) -> Result<Response<v1::ListStimulusSetsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListPageRequest {
            limit: l,
            page_token,
        } = req.into_inner();
        let page = self
            .0
            .service
            .list_stimulus_sets(&caller, limit(l), opt(page_token).as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListStimulusSetsResponse {
            stimulus_sets: page.items.into_iter().map(set_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_stimuli(
        &self,
        req: Request<v1::ListStimuliRequest>,
    ) -> Result<Response<v1::ListStimuliResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListStimuliRequest {
            stimulus_set_id,
            limit: l,
            page_token,
        } = req.into_inner();
        let id = parse_id("stimulus_set_id", &stimulus_set_id).map_err(to_status)?;
        let page = self
            .0
            .service
            .list_stimuli(&caller, id, limit(l), opt(page_token).as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListStimuliResponse {
            stimuli: page
                .items
                .into_iter()
                .map(|s| v1::Stimulus {
                    index: s.index,
                    stimulus_id: s.stimulus_id,
                    label: s.label,
                    extra: s
                        .extra
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                        .collect(),
                    has_thumbnail: s.has_thumbnail,
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_thumbnail(
        &self,
        req: Request<v1::GetThumbnailRequest>,
    ) -> Result<Response<v1::Thumbnail>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetThumbnailRequest {
            stimulus_set_id,
            stimulus_id,
        } = req.into_inner();
        let id = parse_id("stimulus_set_id", &stimulus_set_id).map_err(to_status)?;
        let png = self
            .0
            .service
            .stimulus_thumbnail(&caller, id, &stimulus_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::Thumbnail { png: png.into() }))
    }

    async fn upload_recording(
        &self,
        req: Request<Streaming<v1::UploadRecordingRequest>>,
    ) -> Result<Response<v1::Recording>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let (options, body) = split_upload(req.into_inner(), |m: v1::UploadRecordingRequest| {
            let v1::UploadRecordingRequest { options, data } = m;
            (options, data)
        })
        .await?;
        let up = recording_params(options).into_upload().map_err(to_status)?;
        let rec = self
            .0
            .service
            .upload_recording(&caller, up, body)
            .await
            .map_err(to_status)?;
        Ok(Response::new(recording_to_proto(rec)))
    }

    async fn get_recording(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::Recording>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        Ok(Response::new(recording_to_proto(
            self.0
                .service
                .get_recording(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn list_recordings(
        &self,
        req: Request<v1::ListPageRequest>,
    ) -> Result<Response<v1::ListRecordingsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::ListPageRequest {
            limit: l,
            page_token,
        } = req.into_inner();
        let page = self
            .0
            .service
            .list_recordings(&caller, limit(l), opt(page_token).as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListRecordingsResponse {
            recordings: page.items.into_iter().map(recording_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_neurons(
        &self,
        req: Request<v1::GetByIdRequest>,
    ) -> Result<Response<v1::ListNeuronsResponse>, Status> {
        let caller = caller(&self.0, req.metadata()).await?;
        let v1::GetByIdRequest { id } = req.into_inner();
        let id = parse_id("id", &id).map_err(to_status)?;
        let neurons = self
            .0
            .service
            .recording_neurons(&caller, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListNeuronsResponse {
            reliability_method: neuralign_core::service::RELIABILITY_METHOD.to_string(),
            neurons: neurons
                .into_iter()
                .map(|n| v1::Neuron {
                    index: n.index,
                    neuron_id: n.neuron_id,
                    reliability: n.reliability,
                })
                .collect(),
        }))
    }
}

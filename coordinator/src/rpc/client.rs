//! The coordinator's client calls (submit a spec with its datasets, status, results, watch), on top of the
//! shared connection layer ([`mer_shared::client`]).

use crate::error::CoordError;
use mer_shared::client::{upload_file, Clients};
use mer_shared::proto;
use std::path::Path;
use std::time::Duration;

/// Reads a spec file, uploads its prepared dataset(s) and submits it. Spec and dataset errors are
/// reported here, before anything is sent, with the spec's file, line and column.
pub async fn submit_spec(
    clients: &Clients,
    spec_path: &Path,
) -> Result<proto::SubmitReply, CoordError> {
    let text = std::fs::read_to_string(spec_path).map_err(|e| CoordError::io(spec_path, e))?;
    submit_spec_text(clients, spec_path, text).await
}

/// [`submit_spec`] of `text` standing for the spec file at `spec_path` (its relative paths resolve
/// against it): a spec changed by the command before submitting (`mer submit --slurm`).
pub async fn submit_spec_text(
    clients: &Clients,
    spec_path: &Path,
    text: String,
) -> Result<proto::SubmitReply, CoordError> {
    let spec = crate::spec::load_spec_text(spec_path, &text)?;
    let datasets = crate::plan::load_datasets(&spec)?;
    // Expanding here too reports contradictions against the dataset before uploading anything.
    crate::plan::expand_multi(&spec, &datasets)?;
    for ds in datasets.values() {
        upload_file(clients, &ds.path, "dataset").await?;
    }
    // The spec's own methods' files travel as artifacts too: a worker anywhere runs exactly these bytes.
    let base = spec_path.parent().unwrap_or(Path::new(""));
    for (name, files) in spec.method_files() {
        for f in files {
            let path = base.join(&f.path);
            let sent = upload_file(clients, &path, "method file").await?;
            if sent != f.sha256 {
                return Err(CoordError::Plan(format!(
                    "methods.{name}: {} changed while it was submitted (sha256 {} when read, {sent} when sent); submit again",
                    path.display(),
                    f.sha256
                )));
            }
        }
    }
    let wire = mer_shared::task::WireDataset::from_summaries(&datasets);
    let mut c = clients.client.clone();
    let reply = c
        .submit(proto::SubmitRequest {
            protocol: clients.protocol,
            spec_toml: text,
            spec_path: spec_path.display().to_string(),
            dataset_hash: datasets
                .values()
                .next()
                .map(|d| d.hash.clone())
                .unwrap_or_default(),
            dataset_summary_json: serde_json::to_string(&wire)
                .map_err(|e| CoordError::json("dataset summaries", e))?,
            method_files_json: serde_json::to_string(&spec.method_files())
                .map_err(|e| CoordError::json("method files", e))?,
        })
        .await
        .map_err(|s| CoordError::rpc("submit", s))?;
    Ok(reply.into_inner())
}

/// The current status of experiment `id`.
pub async fn get_status(
    clients: &Clients,
    id: &str,
) -> Result<proto::ExperimentStatus, CoordError> {
    let mut c = clients.client.clone();
    Ok(c.get(proto::GetRequest {
        experiment_id: id.to_string(),
    })
    .await
    .map_err(|s| CoordError::rpc("get", s))?
    .into_inner())
}

/// The results of experiment `id` (`complete` is false while any fold is missing).
pub async fn get_results(clients: &Clients, id: &str) -> Result<proto::ResultsReply, CoordError> {
    let mut c = clients.client.clone();
    Ok(c.results(proto::ResultsRequest {
        experiment_id: id.to_string(),
    })
    .await
    .map_err(|s| CoordError::rpc("results", s))?
    .into_inner())
}

/// Follows an experiment until it ends, calling `on_update` with every status; returns the last one.
pub async fn watch_until_done(
    clients: &Clients,
    id: &str,
    mut on_update: impl FnMut(&proto::ExperimentStatus),
) -> Result<proto::ExperimentStatus, CoordError> {
    let mut c = clients.client.clone();
    let mut unreachable_since = tokio::time::Instant::now();
    loop {
        let mut stream = match c
            .watch(proto::GetRequest {
                experiment_id: id.to_string(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && unreachable_since.elapsed() < Duration::from_secs(120) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(s) => return Err(CoordError::rpc("watch", s)),
        };
        unreachable_since = tokio::time::Instant::now();
        let mut last = None;
        loop {
            match stream.message().await {
                Ok(Some(s)) => {
                    on_update(&s);
                    let done = s.state != crate::store::ExpState::Running.key();
                    last = Some(s);
                    if done {
                        break;
                    }
                }
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::Unavailable => break,
                Err(s) => return Err(CoordError::rpc("watch", s)),
            }
        }
        if let Some(s) = last.filter(|s| s.state != crate::store::ExpState::Running.key()) {
            return Ok(s);
        }
        // The stream ended early (coordinator restarting): follow it again.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a coordinator already finished of the spec at `spec_path` (`mer plan --coordinator`): the spec is
/// checked and expanded here, exactly as `submit_spec` does, and only its task keys are sent.
pub async fn preview_on(
    clients: &Clients,
    spec_path: &Path,
    url: &str,
) -> Result<crate::plan::preview::Preview, CoordError> {
    let plan = crate::plan::preview::plan_of(spec_path)?;
    let mut c = clients.client.clone();
    let reply = c
        .finished(proto::FinishedRequest {
            task_keys: plan.tasks.iter().map(|t| t.key.clone()).collect(),
        })
        .await
        .map_err(|s| CoordError::rpc("finished", s))?
        .into_inner();
    let means: Vec<(String, String, f64)> = serde_json::from_str(&reply.mean_seconds_json)
        .map_err(|e| CoordError::json("mean seconds", e))?;
    let means = means.into_iter().map(|(k, m, s)| ((k, m), s)).collect();
    let finished = reply.finished.into_iter().collect();
    Ok(crate::plan::preview::preview(
        &plan,
        &finished,
        &means,
        &format!("the coordinator at {url}"),
    ))
}

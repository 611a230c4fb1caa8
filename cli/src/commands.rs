//! The subcommands.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;

#[derive(Parser)]
#[command(name = "neuralign", version, about = "Score deep networks against brain data", after_help = EXIT_CODES)]
pub struct Cli {
    /// The service's address: http://host:port for HTTP, grpc://host:port
    /// for gRPC.
    #[arg(
        long,
        env = "NEURALIGN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// An API key of your lab.
    #[arg(long, env = "NEURALIGN_API_KEY", global = true, hide_env_values = true)]
    key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a score is under --fail-under; 2 bad usage; \
3 the job failed or was cancelled; 4 the service refused the request (4xx); 5 unreachable or 5xx.";

#[derive(Subcommand)]
enum Command {
    /// Upload a stimulus set (.npy/.npz, zip of images with manifest.csv, HDF5).
    UploadStimuli {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Reader options as key=value (format, kind, layout, key, dataset, resize, ...).
        #[arg(long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
    },
    /// Upload a recording (.npy/.npz, HDF5, long CSV, NWB).
    UploadRecording {
        file: PathBuf,
        #[arg(long)]
        stimulus_set: String,
        #[arg(long)]
        name: Option<String>,
        /// Reader and metadata options as key=value (region, species, window_end, nan_policy, ...).
        #[arg(long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
    },
    /// Register a model: a TorchScript file (with --input) or a built-in spec (.json).
    RegisterModel {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// The TorchScript model's input spec as JSON.
        #[arg(long)]
        input: Option<String>,
        /// Names of a tuple-returning model's outputs, comma separated.
        #[arg(long)]
        layer_names: Option<String>,
    },
    /// Create a benchmark (a new version of its name) from a JSON file ("-": stdin).
    CreateBenchmark { file: PathBuf },
    /// Submit a job spec from a JSON file ("-": stdin) and print its id.
    Submit { file: PathBuf },
    /// Follow a job to its end with a progress bar; exits 3 unless it succeeds.
    Watch { job: String },
    /// Print a job's result.
    Result {
        job: String,
        #[arg(long)]
        json: bool,
    },
    /// A benchmark's leaderboard.
    Leaderboard {
        benchmark: String,
        #[arg(long)]
        json: bool,
    },
    /// Register (or reuse) a model, score it on benchmarks, print the score
    /// card, and fail when a score is under the threshold.
    Score {
        /// A model id, a TorchScript file (with --input) or a built-in spec (.json).
        #[arg(long)]
        model: String,
        /// `lab/name[@version]` or an id; repeat for several.
        #[arg(long = "benchmark", required = true)]
        benchmarks: Vec<String>,
        #[arg(long)]
        input: Option<String>,
        #[arg(long)]
        layer_names: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Exit 1 when any benchmark's score (normalized when it has a ceiling) is below this.
        #[arg(long)]
        fail_under: Option<f64>,
        /// Print the score card as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn read_json(path: &Path) -> Result<Value> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn options(opts: &[String]) -> Result<Vec<(String, String)>> {
    opts.iter()
        .map(|o| {
            let (k, v) = o.split_once('=').ok_or_else(|| {
                crate::api::ApiError::Usage(format!("--opt {o:?}: expected KEY=VALUE"))
            })?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn run(cli: Cli) -> Result<u8> {
    let key = cli
        .key
        .clone()
        .context("no API key: pass --key or set NEURALIGN_API_KEY")?;
    let api = Client::new(&cli.url, &key)?;
    match cli.command {
        Command::UploadStimuli { file, name, opts } => {
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = name.unwrap_or_else(|| stem(&file));
            print(&api.upload_stimuli(&name, &options(&opts)?, body).await?);
        }
        Command::UploadRecording {
            file,
            stimulus_set,
            name,
            opts,
        } => {
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = name.unwrap_or_else(|| stem(&file));
            print(
                &api.upload_recording(&stimulus_set, &name, &options(&opts)?, body)
                    .await?,
            );
        }
        Command::RegisterModel {
            file,
            name,
            input,
            layer_names,
        } => {
            print(&register(&api, &file, name, input, layer_names).await?);
        }
        Command::CreateBenchmark { file } => {
            print(&api.create_benchmark(&read_json(&file)?).await?)
        }
        Command::Submit { file } => {
            let spec = read_json(&file)?;
            let body = if spec.get("spec").is_some() {
                spec
            } else {
                json!({"spec": spec})
            };
            println!(
                "{}",
                api.submit(&body).await?["id"].as_str().unwrap_or_default()
            );
        }
        Command::Watch { job } => {
            let j = watch(&api, &job).await?;
            println!("{}", j["state"].as_str().unwrap_or("?"));
            if j["state"] != "succeeded" {
                return Ok(3);
            }
        }
        Command::Result { job, json } => {
            let r = api.result(&job).await?;
            if json {
                print(&r);
            } else {
                print_result(&r);
            }
        }
        Command::Leaderboard { benchmark, json } => {
            let b = api.leaderboard(&benchmark).await?;
            if json {
                print(&b);
            } else {
                println!(
                    "{:>4}  {:<28} {:<16} {:<10} {:>10}",
                    "rank", "model", "lab", "layer", "score"
                );
                for e in b["entries"].as_array().into_iter().flatten() {
                    println!(
                        "{:>4}  {:<28} {:<16} {:<10} {:>10.4}",
                        e["rank"],
                        e["model"].as_str().unwrap_or(""),
                        e["lab"].as_str().unwrap_or(""),
                        e["layer"].as_str().unwrap_or("-"),
                        e["score"].as_f64().unwrap_or(f64::NAN)
                    );
                }
            }
        }
        Command::Score {
            model,
            benchmarks,
            input,
            layer_names,
            name,
            fail_under,
            json,
        } => {
            return score(
                &api,
                &model,
                benchmarks,
                input,
                layer_names,
                name,
                fail_under,
                json,
            )
            .await;
        }
    }
    Ok(0)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "upload".into())
}

async fn register(
    api: &Client,
    file: &Path,
    name: Option<String>,
    input: Option<String>,
    layer_names: Option<String>,
) -> Result<Value> {
    let name = name.unwrap_or_else(|| stem(file));
    if file.extension().is_some_and(|e| e == "json") {
        let spec = read_json(file)?;
        let body = if spec.get("spec").is_some() {
            spec
        } else {
            json!({"name": name, "spec": spec})
        };
        return Ok(api.register_builtin(&body).await?);
    }
    let input =
        input.context("--input: required for a TorchScript model (its input spec as JSON)")?;
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(api
        .register_torchscript(&name, &input, layer_names.as_deref(), body)
        .await?)
}

/// Follows a job until it ends, drawing progress on stderr.
async fn watch(api: &Client, job: &str) -> Result<Value> {
    let tty = std::io::stderr().is_terminal();
    let mut after = 0i64;
    loop {
        let j = api.job(job).await?;
        let events = api.events(job, after).await?;
        let mut message = None;
        for e in events.as_array().into_iter().flatten() {
            after = after.max(e["id"].as_i64().unwrap_or(after));
            if let Some(m) = e["message"].as_str() {
                message = Some(m.to_string());
            }
        }
        let p = j["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
        let bar: String = (0..30)
            .map(|i| if (i as f64) < p * 30.0 { '#' } else { '-' })
            .collect();
        let state = j["state"].as_str().unwrap_or("?");
        let line = format!(
            "[{bar}] {:>3.0}% {state} {}",
            p * 100.0,
            message.unwrap_or_default()
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else if after > 0 {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
        if matches!(state, "succeeded" | "failed" | "cancelled") {
            if tty {
                eprintln!();
            }
            return Ok(j);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_result(r: &Value) {
    match r["benchmarks"].as_array() {
        Some(bs) => {
            println!(
                "{:<36} {:<10} {:>9} {:>9} {:>10}  {:<23}",
                "benchmark", "layer", "raw", "ceiling", "normalized", "95% CI"
            );
            for b in bs {
                if b["state"] != "succeeded" {
                    println!(
                        "{:<36} failed: {}",
                        b["benchmark"].as_str().unwrap_or(""),
                        b["error"].as_str().unwrap_or("")
                    );
                    continue;
                }
                let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.4}"));
                let ci = b["ci"]
                    .as_array()
                    .map_or("-".into(), |c| format!("[{}, {}]", f(&c[0]), f(&c[1])));
                println!(
                    "{:<36} {:<10} {:>9} {:>9} {:>10}  {ci}",
                    b["benchmark"].as_str().unwrap_or(""),
                    b["layer"].as_str().unwrap_or(""),
                    f(&b["raw"]),
                    f(&b["ceiling"]),
                    f(&b["normalized"])
                );
            }
        }
        None => print(r),
    }
}

#[allow(clippy::too_many_arguments)]
async fn score(
    api: &Client,
    model: &str,
    benchmarks: Vec<String>,
    input: Option<String>,
    layer_names: Option<String>,
    name: Option<String>,
    fail_under: Option<f64>,
    as_json: bool,
) -> Result<u8> {
    let model_id = if model.len() == 36 && model.chars().filter(|c| *c == '-').count() == 4 {
        model.to_string()
    } else {
        let path = PathBuf::from(model);
        if !path.exists() {
            bail!("--model: {model} is neither a model id nor a file");
        }
        let m = register(api, &path, name, input, layer_names).await?;
        eprintln!(
            "model {}@{} ({}, {})",
            m["name"].as_str().unwrap_or(""),
            m["version"],
            m["id"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or("")
        );
        m["id"].as_str().unwrap_or_default().to_string()
    };
    let job = api
        .submit(&json!({"spec": {"kind": "score", "model": model_id, "benchmarks": benchmarks}}))
        .await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let done = watch(api, &id).await?;
    if done["state"] != "succeeded" {
        eprintln!(
            "neuralign: score job {id} {}: {}",
            done["state"].as_str().unwrap_or("?"),
            done["error"].as_str().unwrap_or("")
        );
        return Ok(3);
    }
    let result = &done["result"];
    if as_json {
        print(result);
    } else {
        print_result(result);
    }
    let mut code = 0;
    for b in result["benchmarks"].as_array().into_iter().flatten() {
        if b["state"] != "succeeded" {
            eprintln!(
                "neuralign: {} failed: {}",
                b["benchmark"].as_str().unwrap_or(""),
                b["error"].as_str().unwrap_or("")
            );
            code = 3;
            continue;
        }
        if let Some(t) = fail_under {
            let s = b["normalized"]
                .as_f64()
                .or_else(|| b["raw"].as_f64())
                .unwrap_or(f64::NAN);
            if s.is_nan() || s < t {
                eprintln!(
                    "neuralign: {} scored {s:.4}, under --fail-under {t}",
                    b["benchmark"].as_str().unwrap_or("")
                );
                if code == 0 {
                    code = 1;
                }
            }
        }
    }
    Ok(code)
}

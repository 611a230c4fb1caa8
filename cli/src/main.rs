//! `neuralign`: the service from a shell or a CI pipeline, over HTTP
//! (`--url http://…`) or gRPC (`--url grpc://…`) with an API key from
//! `--key` or `NEURALIGN_API_KEY`. Light on purpose: no libtorch, no
//! database.
//!
//! Exit codes: 0 success; 1 a score is under `--fail-under`; 2 bad usage;
//! 3 the job failed or was cancelled; 4 the service refused the request
//! (4xx: bad input, unknown id, bad key); 5 the service is unreachable or
//! answered 5xx.

mod api;
mod client;
mod commands;
mod grpc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("neuralign: cannot start: {e}");
            return ExitCode::from(5);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e
                .downcast_ref::<api::ApiError>()
                .map_or(5, api::ApiError::exit_code);
            eprintln!("neuralign: {e:#}");
            ExitCode::from(code)
        }
    }
}

//! native-hello: the native baseline for the hello component — `200 hello\n` to any
//! request, served the way silo serves (see `silo_bench::serve`).

use clap::Parser;
use hyper::StatusCode;
use silo_bench::{ServeArgs, serve, text};

/// Answers `200 hello\n` to every request.
#[derive(Debug, Parser)]
#[command(name = "native-hello")]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    serve(&cli.serve, || {
        Ok(|_req: &_| text(StatusCode::OK, "hello\n"))
    })
}

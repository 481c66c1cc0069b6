//! `sagaflow`: operate sagas through an orchestrator's admin API
//! (`sagaflow.admin.v1.SagaAdmin`, served on the orchestrator's `--admin-addr`).
//!
//! ```sh
//! sagaflow list --status stuck --older-than 10m
//! sagaflow get req-2
//! sagaflow resume req-2
//! ```
//!
//! Tables by default, one JSON document on stdout with `--json`; errors on stderr. Exit
//! codes: 0 ok; 1 usage error or invalid request (and any other error); 3 not found;
//! 4 refused (not stuck, finished, past its pivot, or changed meanwhile); 5 orchestrator
//! unreachable or unavailable; 6 unauthenticated.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod args;
mod client;
mod exit;
mod human;
mod json;

use std::process::ExitCode;

use clap::Parser;
use saga_runtime::grpc::admin::pb;

use crate::args::{Cli, Command, DeadLetterArgs, ListArgs};
use crate::client::Client;
use crate::exit::{Exit, Failure};

/// What a command prints: a JSON document or text.
struct Output {
    json: serde_json::Value,
    text: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version print to stdout and succeed; a usage error exits 1.
            let _ = error.print();
            return if error.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                Exit::Usage.into()
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Usage.into();
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(output) if cli.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output.json).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(output) => {
            print!("{}", output.text);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit.into()
        }
    }
}

async fn run(cli: &Cli) -> Result<Output, Failure> {
    let mut client =
        Client::connect(&cli.addr, &cli.tls(), cli.token.as_deref(), &cli.operator).await?;
    match &cli.command {
        Command::Get { trace_id } => {
            let saga = client.get(trace_id).await?;
            Ok(Output {
                json: json::saga(&saga),
                text: human::saga(&saga),
            })
        }
        Command::List(args) => list(&mut client, args).await,
        Command::Resume { trace_id } => {
            let resumed = client.resume(trace_id).await?;
            Ok(Output {
                json: json::resumed(trace_id, &resumed),
                text: human::after("resumed", trace_id, resumed.saga.as_ref()),
            })
        }
        Command::Compensate { trace_id } => {
            let response = client.compensate(trace_id).await?;
            let action = match response.result.as_str() {
                "requested" => "compensation requested for",
                "already_compensating" => "already compensating:",
                "reopened" => "reopened to compensate",
                other => other,
            };
            Ok(Output {
                json: json::compensated(trace_id, &response),
                text: human::after(action, trace_id, response.saga.as_ref()),
            })
        }
        Command::DeadLetters(args) => dead_letters(&mut client, args).await,
        Command::Diagram { saga, trace_id } => {
            let diagram = client.diagram(saga, trace_id.as_deref()).await?;
            Ok(Output {
                json: json::diagram(saga, &diagram),
                text: diagram.mermaid,
            })
        }
        Command::Sagas => {
            let sagas = client.sagas().await?;
            Ok(Output {
                json: json::definitions(&sagas),
                text: human::definitions(&sagas),
            })
        }
    }
}

async fn list(client: &mut Client, args: &ListArgs) -> Result<Output, Failure> {
    let older_than_ms = args
        .older_than
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut request = pb::ListSagasRequest {
        status: args.status.clone(),
        older_than_ms,
        saga: args.saga.clone(),
        limit: args.limit,
        page_token: args.page.clone().unwrap_or_default(),
    };
    let mut sagas = Vec::new();
    let next = loop {
        let page = client.list(request.clone()).await?;
        sagas.extend(page.sagas);
        if !args.all || page.next_page_token.is_empty() {
            break page.next_page_token;
        }
        request.page_token = page.next_page_token;
    };
    Ok(Output {
        json: json::page(&sagas, &next),
        text: human::page(&args.status, &sagas, &next),
    })
}

async fn dead_letters(client: &mut Client, args: &DeadLetterArgs) -> Result<Output, Failure> {
    if args.replay {
        let replayed = client
            .replay(args.saga.as_deref(), args.message_id.as_deref())
            .await?;
        return Ok(Output {
            json: json::replayed(&replayed),
            text: human::replayed(&replayed),
        });
    }
    let letters = client
        .dead_letters(args.saga.as_deref(), args.limit)
        .await?;
    Ok(Output {
        json: json::dead_letters(&letters),
        text: human::dead_letters(&letters),
    })
}

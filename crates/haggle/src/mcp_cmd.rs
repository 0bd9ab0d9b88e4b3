//! `haggle mcp`: one agent's market as an MCP server on stdin/stdout, for desktop MCP clients.
//! It talks to any Haggle server over HTTP with the agent's token; stdout carries only the
//! protocol, so everything else (logs, the greeting) goes to stderr.

use haggle_api::MarketClient;
use haggle_client::HttpClient;

#[derive(clap::Args)]
pub struct McpArgs {
    /// The server's base URL.
    #[arg(long, env = "HAGGLE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The agent token of the participant to trade for.
    #[arg(long, env = "HAGGLE_AGENT_TOKEN")]
    token: Option<String>,
    /// List argument schemas without a root `oneOf`, for clients that pass tool schemas on to
    /// Anthropic's API (which refuses `oneOf`/`anyOf`/`allOf` at a schema's root).
    #[arg(long)]
    portable_schemas: bool,
}

pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let token = crate::agent_cmd::agent_token(args.token.as_deref())?;
    let client = HttpClient::connect(&args.server, token)
        .await
        .map_err(|e| anyhow::anyhow!("cannot join {}: {e}", args.server))?;
    eprintln!(
        "haggle: MCP on stdio for participant {} of market {} at {}",
        client.participant_id(),
        client.market_id(),
        args.server
    );
    let schemas = if args.portable_schemas {
        haggle_mcp::Schemas::Portable
    } else {
        haggle_mcp::Schemas::Full
    };
    haggle_mcp::serve_stdio(client, schemas).await?;
    Ok(())
}

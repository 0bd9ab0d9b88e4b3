//! Haggle as a Model Context Protocol server: the agent tool catalogue (`haggle_agents::tools`,
//! the same definition LLM brains use), the market's rules and the agent's own profile as
//! resources, and a prompt on trading well. Generic over `MarketClient`, so every call goes
//! through the market contract: over HTTP for stdio (`haggle mcp`), in-process behind `/mcp`.
//!
//! State-changing tool calls are idempotent per request: a call's `idempotency_key` argument, or
//! else a key derived from the session (stdio: the connection; HTTP: `Mcp-Session-Id`) and the
//! JSON-RPC request id, so a request re-sent in its session answers with its first result.

pub mod guide;
pub mod http;

use haggle_agents::tools::{self, ToolError};
use haggle_api::haggle_core::lifecycle::Reputation;
use haggle_api::haggle_core::{ErrorCode, Listing, ListingStatus, Market, Participant};
use haggle_api::{Balance, ListingQuery, MarketClient};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams, Prompt,
    PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, Role, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, LazyLock, OnceLock};

/// The market's rules resource.
pub const RULES_URI: &str = "haggle://market/rules";
/// The agent's own profile resource.
pub const PROFILE_URI: &str = "haggle://me/profile";

/// The MCP server for one agent.
pub struct HaggleMcp<C> {
    source: Source<C>,
    /// The argument schemas listed (stdio; over HTTP the request's `?schemas=` decides).
    schemas: Schemas,
}

/// How the tools' argument schemas are listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Schemas {
    /// The catalogue's: "exactly one of `thread_id` or `listing_id`" as a root `oneOf`.
    #[default]
    Full,
    /// Without the root `oneOf`, for clients that pass tool schemas on to Anthropic's API,
    /// which refuses `oneOf`/`anyOf`/`allOf` at the root of a tool's schema (the description
    /// and the dispatcher's refusal still say "exactly one"). Over HTTP: `/mcp?schemas=portable`.
    Portable,
}

enum Source<C> {
    /// One client for the whole connection (stdio: the token given on the command line), and the
    /// connection's random id.
    Fixed(Arc<C>, String),
    /// The client the HTTP layer authenticated for each request ([`http::Authenticated`]); the
    /// handshake (or, without one, the first request) binds the session to its participant, and
    /// later requests must come from the same one.
    PerRequest(OnceLock<(i64, i64)>),
}

impl<C: MarketClient + 'static> HaggleMcp<C> {
    /// A server acting through `client` for the life of the connection.
    pub fn new(client: C) -> HaggleMcp<C> {
        use rand::{RngCore, SeedableRng};
        let connection = format!("{:016x}", rand::rngs::StdRng::from_os_rng().next_u64());
        HaggleMcp {
            source: Source::Fixed(Arc::new(client), connection),
            schemas: Schemas::Full,
        }
    }

    /// A server that acts, for each request, through the client the HTTP layer authenticated.
    pub fn per_request() -> HaggleMcp<C> {
        HaggleMcp {
            source: Source::PerRequest(OnceLock::new()),
            schemas: Schemas::Full,
        }
    }

    fn client(&self, ctx: &RequestContext<RoleServer>) -> Result<Arc<C>, ToolError> {
        match &self.source {
            Source::Fixed(c, _) => Ok(c.clone()),
            Source::PerRequest(bound) => {
                let client = ctx
                    .extensions
                    .get::<::http::request::Parts>()
                    .and_then(|p| p.extensions.get::<http::Authenticated<C>>())
                    .map(|a| a.0.clone())
                    .ok_or_else(|| {
                        ToolError::new(
                            ErrorCode::Unauthorized,
                            "this request was not authenticated: send 'Authorization: Bearer <agent token>'",
                        )
                    })?;
                let me = (client.market_id(), client.participant_id());
                let owner = *bound.get_or_init(|| me);
                if owner != me {
                    return Err(ToolError::new(
                        ErrorCode::Forbidden,
                        format!(
                            "this MCP session belongs to participant {} of market {}; a token \
                             acts only for its own participant",
                            owner.1, owner.0
                        ),
                    ));
                }
                Ok(client)
            }
        }
    }

    /// The same server listing its schemas as `schemas` says.
    pub fn with_schemas(mut self, schemas: Schemas) -> HaggleMcp<C> {
        self.schemas = schemas;
        self
    }

    /// The schemas this request lists: the server's, or over HTTP the query's `schemas=portable`.
    fn schemas(&self, ctx: &RequestContext<RoleServer>) -> Schemas {
        let portable = ctx
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|p| p.uri.query())
            .is_some_and(|q| q.split('&').any(|kv| kv == "schemas=portable"));
        if portable {
            Schemas::Portable
        } else {
            self.schemas
        }
    }

    /// The idempotency key of this request when it carries none: the session's id and the
    /// JSON-RPC request id (unique within a session, so only a re-sent request repeats it). None
    /// outside a session (a stateless HTTP request) or for an id too long to fit a key.
    fn derived_key(&self, ctx: &RequestContext<RoleServer>) -> Option<String> {
        let session = match &self.source {
            Source::Fixed(_, connection) => connection.clone(),
            Source::PerRequest(_) => ctx
                .extensions
                .get::<::http::request::Parts>()
                .and_then(|p| p.headers.get("mcp-session-id"))
                .and_then(|v| v.to_str().ok())?
                .to_string(),
        };
        let id = match &ctx.id {
            rmcp::model::NumberOrString::Number(n) => format!("n{n}"),
            rmcp::model::NumberOrString::String(s) => format!("s{s}"),
        };
        let key = format!("mcp:{session}:{id}");
        (key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic())).then_some(key)
    }
}

/// Why serving a connection ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the MCP handshake failed: {0}")]
    Handshake(String),
    #[error("the MCP server stopped unexpectedly: {0}")]
    Stopped(String),
}

/// Serves one MCP connection over a byte stream (stdin/stdout for `haggle mcp`) until the client
/// disconnects.
pub async fn serve_io<C, R, W>(client: C, read: R, write: W) -> Result<(), ServeError>
where
    C: MarketClient + 'static,
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    serve_io_with(client, Schemas::Full, read, write).await
}

/// [`serve_io`] listing the schemas as `schemas` says.
pub async fn serve_io_with<C, R, W>(
    client: C,
    schemas: Schemas,
    read: R,
    write: W,
) -> Result<(), ServeError>
where
    C: MarketClient + 'static,
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let running = HaggleMcp::new(client)
        .with_schemas(schemas)
        .serve((read, write))
        .await
        .map_err(|e| ServeError::Handshake(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Stopped(e.to_string()))?;
    Ok(())
}

/// Serves one MCP connection on this process's stdin and stdout.
pub async fn serve_stdio<C: MarketClient + 'static>(
    client: C,
    schemas: Schemas,
) -> Result<(), ServeError> {
    let (read, write) = rmcp::transport::stdio();
    serve_io_with(client, schemas, read, write).await
}

/// The catalogue as MCP tools (built once).
static TOOLS: LazyLock<Vec<Tool>> =
    LazyLock::new(|| tools::catalogue().iter().map(mcp_tool).collect());

/// The same without a root `oneOf` ([`Schemas::Portable`]).
static PORTABLE_TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    TOOLS
        .iter()
        .map(|t| {
            let mut t = t.clone();
            let mut schema = (*t.input_schema).clone();
            schema.remove("oneOf");
            t.input_schema = Arc::new(schema);
            t
        })
        .collect()
});

fn object(v: &Value) -> Arc<serde_json::Map<String, Value>> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn mcp_tool(t: &tools::Tool) -> Tool {
    let a = t.annotations;
    Tool::new(t.name, t.description, object(&t.input_schema))
        .with_title(t.title)
        .with_raw_output_schema(object(&t.output_schema))
        .with_annotations(
            ToolAnnotations::with_title(t.title)
                .read_only(a.read_only)
                .destructive(a.destructive)
                .idempotent(a.idempotent)
                // The market is a closed world: tools reach nothing outside it.
                .open_world(false),
        )
}

/// A refusal as a tool result: `isError`, with the HTTP API's error body as structured content
/// and as text.
fn refusal(e: &ToolError) -> CallToolResult {
    CallToolResult::structured_error(serde_json::to_value(&e.body).unwrap_or(Value::Null))
}

/// A refusal outside a tool call (resources, prompts): a JSON-RPC error carrying the same body.
fn protocol_error(e: ToolError) -> McpError {
    let data = serde_json::to_value(&e.body).ok();
    let message = format!("{}: {}", e.code(), e.message());
    match e.code() {
        ErrorCode::Internal => McpError::internal_error(message, data),
        ErrorCode::NotFound => McpError::resource_not_found(message, data),
        _ => McpError::invalid_request(message, data),
    }
}

/// What the market knows about the agent's participant (the profile resource).
#[derive(Debug, Serialize)]
pub struct ProfileSummary {
    pub participant: Participant,
    pub market: MarketSummary,
    pub balance: Balance,
    pub reputation: Reputation,
    /// The participant's active listings and wanted ads (up to 500).
    pub active_listings: Vec<Listing>,
}

#[derive(Debug, Serialize)]
pub struct MarketSummary {
    pub id: i64,
    pub name: String,
    pub currency: String,
}

async fn profile<C: MarketClient>(c: &C) -> Result<ProfileSummary, ToolError> {
    let market = c.market().await?;
    let participant = c.participant().await?;
    let balance = c.balance().await?;
    let reputation = c.reputation(c.participant_id()).await?;
    let mine = ListingQuery {
        owner: Some(c.participant_id()),
        status: Some(ListingStatus::Active),
        limit: Some(haggle_api::haggle_core::limits::MAX_PAGE),
        ..ListingQuery::default()
    };
    let active_listings = c.search(&mine).await?.items;
    Ok(ProfileSummary {
        participant,
        market: MarketSummary {
            id: market.id,
            name: market.name,
            currency: market.currency,
        },
        balance,
        reputation,
        active_listings,
    })
}

fn json_contents<T: Serialize>(uri: &str, v: &T) -> Result<ReadResourceResult, McpError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| McpError::internal_error(format!("could not encode {uri}: {e}"), None))?;
    let contents = ResourceContents::text(text, uri).with_mime_type("application/json");
    // Both change as the market moves: never serve them from a cache.
    Ok(ReadResourceResult::new(vec![contents])
        .with_ttl_ms(0)
        .with_cache_scope(CacheScope::Private))
}

impl<C: MarketClient + 'static> ServerHandler for HaggleMcp<C> {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .build();
        ServerConfig::new(caps)
            .with_server_info(
                Implementation::new("haggle", env!("CARGO_PKG_VERSION"))
                    .with_title("Haggle market"),
            )
            .with_instructions(guide::INSTRUCTIONS)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        // Over HTTP the session belongs to the participant whose token opened it, from the
        // handshake on (not from its first tool call).
        if let Source::PerRequest(_) = self.source {
            self.client(&context).map_err(protocol_error)?;
        }
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = match self.schemas(&context) {
            Schemas::Full => &TOOLS,
            Schemas::Portable => &PORTABLE_TOOLS,
        };
        Ok(ListToolsResult::with_all_items(tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        TOOLS.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if tools::find(&request.name).is_none() {
            return Err(McpError::invalid_params(
                format!("unknown tool '{}'", request.name),
                None,
            ));
        }
        let client = match self.client(&context) {
            Ok(c) => c,
            Err(e) => return Ok(refusal(&e).into()),
        };
        let args = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let derived = self.derived_key(&context);
        let called = tools::call_keyed(client.as_ref(), &request.name, args, derived.as_deref());
        let result = match called.await {
            Ok(v) => CallToolResult::structured(v),
            Err(e) => refusal(&e),
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(RULES_URI, "market-rules")
                .with_title("Market rules")
                .with_description(
                    "The market this agent trades in: name, currency (amounts in its minor \
                     units), clock, and its rules (offer lifetime, offers per thread, thread \
                     time limit, confirmation, approval and rating windows, cancellation), as \
                     GET /v1/markets/{market} returns them.",
                )
                .with_mime_type("application/json"),
            Resource::new(PROFILE_URI, "my-profile")
                .with_title("My profile")
                .with_description(
                    "What the market knows about this agent's participant: name, mandate, \
                     balance (available / held / total), reputation and active listings.",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let client = self.client(&context).map_err(protocol_error)?;
        let result = match request.uri.as_str() {
            RULES_URI => {
                let market: Market = client
                    .market()
                    .await
                    .map_err(|e| protocol_error(e.into()))?;
                json_contents(RULES_URI, &market)?
            }
            PROFILE_URI => {
                let p = profile(client.as_ref()).await.map_err(protocol_error)?;
                json_contents(PROFILE_URI, &p)?
            }
            other => {
                return Err(McpError::resource_not_found(
                    format!("no resource {other}; the resources are {RULES_URI} and {PROFILE_URI}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let goal = PromptArgument::new("goal")
            .with_description("What your principal wants to buy or sell (optional).")
            .with_required(false);
        let prompt = Prompt::new(
            guide::PROMPT_NAME,
            Some("How to trade well on Haggle: this market's rules, the tools in order, negotiation and safety."),
            Some(vec![goal]),
        )
        .with_title("Trade well on Haggle");
        Ok(ListPromptsResult::with_all_items(vec![prompt]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if request.name != guide::PROMPT_NAME {
            return Err(McpError::invalid_params(
                format!(
                    "no prompt '{}'; the prompt is {}",
                    request.name,
                    guide::PROMPT_NAME
                ),
                None,
            ));
        }
        let goal = match request.arguments.as_ref().and_then(|a| a.get("goal")) {
            None | Some(Value::Null) => None,
            Some(Value::String(g)) => Some(g.clone()),
            Some(_) => {
                return Err(McpError::invalid_params(
                    "argument `goal` must be a string",
                    None,
                ));
            }
        };
        let client = self.client(&context).map_err(protocol_error)?;
        let market = client
            .market()
            .await
            .map_err(|e| protocol_error(e.into()))?;
        let text = guide::trade_well(&market, goal.as_deref());
        let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
        result.description = Some(format!("How to trade well in market {}", market.name));
        Ok(result.into())
    }
}

//! What the OpenAPI document adds to the `#[utoipa::path]` annotations: the bearer scheme, and
//! every operation's error responses, derived from the operation's shape and the one mapping of
//! error codes to statuses (`ErrorCode::http_status`), so no route lists them by hand.

use haggle_core::ErrorCode;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder};

/// The bearer token scheme every operation names.
pub struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Names the optional `Idempotency-Key` header on every mutation.
pub struct IdempotencyKey;

impl utoipa::Modify for IdempotencyKey {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.post, &mut item.put].into_iter().flatten() {
                let header = ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "A retry with the same key, method, path and body gets the first answer; \
                         the same key with another request is refused (`idempotency_conflict`).",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build();
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(RefOr::T(header));
            }
        }
    }
}

/// Adds to every operation each error status its handler can return, with the error body.
pub struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, true),
            ];
            for (op, mutation) in ops {
                if let Some(op) = op.as_mut() {
                    describe_successes(op);
                    for status in error_statuses(op, mutation) {
                        let response = ResponseBuilder::new()
                            .description(describe(status, mutation))
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build();
                        op.responses
                            .responses
                            .insert(status.to_string(), RefOr::T(response));
                    }
                }
            }
        }
    }
}

/// OpenAPI requires a description on every response; a success without one gets its reason.
fn describe_successes(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response
            && r.description.is_empty()
        {
            r.description = match status.as_str() {
                "201" => "Created",
                _ => "OK",
            }
            .into();
        }
    }
}

/// The error statuses an operation can answer with. Every route authenticates (401, and 403
/// `participant_suspended` for a suspended participant's agent token) and is rate-limited per
/// token (429); a route naming an object can miss it (404), and one naming a market or changing
/// anything checks the caller's role (403); anything parsed from the request
/// can be malformed (422); a mutation can meet a state conflict or a key still in flight (409),
/// and its domain refusals are 403/409/422 like the rest. (`GET /v1/me` and `GET /v1/markets`
/// answer every valid token.)
pub fn error_statuses(op: &Operation, mutation: bool) -> Vec<u16> {
    let params = op.parameters.as_deref().unwrap_or_default();
    let in_path = params.iter().any(|p| match p {
        RefOr::T(p) => p.parameter_in == ParameterIn::Path,
        RefOr::Ref(_) => false,
    });
    // Every token is checked for a suspension, so every operation can answer 403.
    let mut out = vec![401, 403];
    if in_path {
        out.push(404);
    }
    if mutation {
        out.push(409);
    }
    if !params.is_empty() || op.request_body.is_some() || mutation {
        out.push(422);
    }
    out.push(429);
    out
}

/// "Refusal (the error body); `code` is one of: …", from the codes that travel with `status`.
fn describe(status: u16, mutation: bool) -> String {
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .filter(|c| c.http_status() == status && **c != ErrorCode::Internal)
        // A read refuses only on who is asking, what it names and how it is asked.
        .filter(|c| {
            mutation
                || matches!(
                    c,
                    ErrorCode::Unauthorized
                        | ErrorCode::Forbidden
                        | ErrorCode::ParticipantSuspended
                        | ErrorCode::NotFound
                        | ErrorCode::InvalidRequest
                        | ErrorCode::RateLimited
                )
        })
        .map(|c| format!("`{c}`"))
        .collect();
    format!("Refused (the error body); `code` is {}", codes.join(", "))
}

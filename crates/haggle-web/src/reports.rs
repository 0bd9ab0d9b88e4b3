//! Experiment and demo reports, browsable from the server (`haggle serve --reports DIR`): the
//! report folders under DIR (each with `report.html`, CSVs, JSON) for operators and observers —
//! reports hold ground truth such as floor prices, so they are research data, not public.
//! Paths are checked segment by segment and resolved inside DIR (no `..`, no symlink escapes).
//! Only report artefacts are served (an allow-list of kinds; never a database, a token file, a
//! `private` folder or any file that holds a token), whatever else the folder holds.

use crate::Web;
use crate::page::{Failure, Nav, PageResult, forbidden, render};
use crate::session::Signed;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use haggle_core::ErrorCode;
use haggle_service::{ApiError, Role};
use std::path::{Path, PathBuf};

/// Larger files are not served (reports are a few megabytes at most).
const MAX_FILE: u64 = 64 * 1024 * 1024;

fn not_found(what: &str) -> Failure {
    Failure::Api(ApiError::new(
        ErrorCode::NotFound,
        format!("no report file '{what}'"),
    ))
}

fn researcher(s: &Signed) -> PageResult<()> {
    if matches!(s.caller.role, Role::Operator | Role::Observer) {
        Ok(())
    } else {
        Err(forbidden(
            "reports are for operators and observers (they show private prices)",
        ))
    }
}

fn base(web: &Web) -> PageResult<PathBuf> {
    let dir = web.reports.as_ref().ok_or_else(|| {
        Failure::Api(ApiError::new(
            ErrorCode::NotFound,
            "this server serves no reports (start it with --reports DIR)",
        ))
    })?;
    std::fs::canonicalize(dir.as_path()).map_err(|e| {
        Failure::Api(ApiError::internal(format!(
            "reports folder {}: {e}",
            dir.display()
        )))
    })
}

pub struct ReportLine {
    pub name: String,
    pub href: String,
    pub files: Vec<String>,
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    nav: Nav,
    reports: Vec<ReportLine>,
    configured: bool,
}

/// Folder and file names never listed or served: hidden ones, and `private` (where the demo keeps
/// its database and tokens).
fn visible(name: &str) -> bool {
    !name.starts_with('.') && name != "private"
}

/// The kinds of report artefact served (HTML, SVG, CSV, JSON, PNG): never databases, logs or
/// anything else a run folder holds.
const SERVED_KINDS: [&str; 5] = ["html", "svg", "csv", "json", "png"];

/// Files whose names say they hold secrets are never served, whatever their kind.
const SECRET_NAMES: [&str; 1] = ["tokens.json"];

/// Whether a file of this name may be listed and served.
pub fn servable(name: &str) -> bool {
    let kind = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    visible(name)
        && !SECRET_NAMES.contains(&name)
        && kind.is_some_and(|k| SERVED_KINDS.contains(&k.as_str()))
}

/// Whether `body` holds a bearer token (`hgl_` and 48 hex digits): such a file is never served,
/// even under an allowed name.
pub fn holds_token(body: &[u8]) -> bool {
    memchr::memmem::find_iter(body, b"hgl_").any(|at| {
        let rest = &body[at + 4..];
        rest.len() >= 48 && rest[..48].iter().all(u8::is_ascii_hexdigit)
    })
}

pub async fn index(State(web): State<Web>, s: Signed) -> PageResult {
    researcher(&s)?;
    let nav = Nav {
        title: "Reports".into(),
        who: Some(s.who(None)),
        current: "reports",
        ..Nav::default()
    };
    if web.reports.is_none() {
        return Ok(render(&ReportsPage {
            nav,
            reports: Vec::new(),
            configured: false,
        }));
    }
    let root = base(&web)?;
    let mut reports = Vec::new();
    // The folder itself may be one report (a demo's output folder), or hold several.
    let mut dirs = vec![(String::new(), root.clone())];
    if let Ok(entries) = std::fs::read_dir(&root) {
        let mut subs: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .filter(|(n, _)| visible(n))
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    for (name, dir) in dirs {
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| servable(n))
                    .collect()
            })
            .unwrap_or_default();
        if !files.iter().any(|f| f == "report.html") {
            continue;
        }
        files.sort();
        let prefix = if name.is_empty() {
            "/reports/".to_string()
        } else {
            format!("/reports/{}/", crate::format::url_encode(&name))
        };
        reports.push(ReportLine {
            name: if name.is_empty() {
                "(this folder)".into()
            } else {
                name
            },
            href: prefix,
            files,
        });
    }
    Ok(render(&ReportsPage {
        nav,
        reports,
        configured: true,
    }))
}

/// The file a request path names inside `root`, or `None` when the path is not a plain relative
/// path (empty, `.`, `..` or hidden segments, backslashes) or resolves outside `root`.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for seg in path.split('/') {
        if seg.is_empty()
            || seg.starts_with('.')
            || seg.contains('\\')
            || seg.contains('\0')
            || seg.contains(':')
            || !visible(seg)
        {
            return None;
        }
        p.push(seg);
    }
    let real = std::fs::canonicalize(&p).ok()?;
    real.starts_with(root).then_some(real)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "txt" | "md" | "log" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

pub async fn file(
    State(web): State<Web>,
    s: Signed,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> PageResult<Response> {
    researcher(&s)?;
    let root = base(&web)?;
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Redirect::to("/reports/").into_response());
    }
    let mut target = resolve(&root, trimmed).ok_or_else(|| not_found(&path))?;
    if target.is_dir() {
        if !path.ends_with('/') {
            return Ok(Redirect::to(&format!("/reports/{trimmed}/")).into_response());
        }
        target =
            resolve(&root, &format!("{trimmed}/report.html")).ok_or_else(|| not_found(&path))?;
    }
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !servable(name) {
        return Err(not_found(&path));
    }
    let meta = tokio::fs::metadata(&target)
        .await
        .map_err(|_| not_found(&path))?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(not_found(&path));
    }
    let body = tokio::fs::read(&target)
        .await
        .map_err(|e| Failure::Api(ApiError::internal(format!("reading {path}: {e}"))))?;
    if holds_token(&body) {
        return Err(forbidden(
            "this file holds a credential: report folders serve no secrets",
        ));
    }
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&target)),
    );
    // Reports are self-contained documents: their own inline styles, never scripts.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; sandbox",
        ),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn paths_stay_inside_the_reports_folder() {
        let root = std::env::temp_dir().join(format!("haggle-web-reports-{}", std::process::id()));
        std::fs::create_dir_all(root.join("run1")).unwrap();
        std::fs::write(root.join("run1/report.html"), "<h1>ok</h1>").unwrap();
        std::fs::write(root.join("secret.txt"), "x").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert!(resolve(&root, "run1/report.html").is_some());
        assert!(resolve(&root, "secret.txt").is_some());
        for bad in [
            "../etc/passwd",
            "run1/../../etc/passwd",
            "run1/./report.html",
            "/etc/passwd",
            "run1//report.html",
            ".hidden",
            "run1\\..\\secret.txt",
            "C:/x",
            "missing.html",
            "private/report.html",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad}");
        }
        #[cfg(unix)]
        {
            let link = root.join("escape");
            let _ = std::os::unix::fs::symlink("/etc", &link);
            assert!(resolve(&root, "escape/hostname").is_none(), "symlink out");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_report_artefacts_are_servable() {
        use super::servable;
        for ok in [
            "report.html",
            "chart.svg",
            "deals.csv",
            "results.json",
            "x.PNG",
        ] {
            assert!(servable(ok), "{ok}");
        }
        for bad in [
            "tokens.json",
            "haggle.db",
            "haggle.db-wal",
            "haggle.db-shm",
            "llm_calls.jsonl",
            "notes.txt",
            ".report.html",
            "Makefile",
        ] {
            assert!(!servable(bad), "{bad}");
        }
    }

    #[test]
    fn a_token_anywhere_in_a_file_is_found() {
        use super::holds_token;
        let token = format!("hgl_{}", "ab12".repeat(12));
        assert!(holds_token(format!("{{\"t\": \"{token}\"}}").as_bytes()));
        assert!(holds_token(token.as_bytes()));
        assert!(!holds_token(b"hgl_ is a prefix; hgl_12 too short"));
        assert!(!holds_token(format!("hgl_{}", "zz".repeat(24)).as_bytes()));
    }
}

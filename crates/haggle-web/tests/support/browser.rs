//! A small WebDriver client (W3C WebDriver is JSON over HTTP) driving Debian's headless Chromium
//! through `chromedriver`: lighter than a WebDriver or DevTools crate, since reqwest is already
//! in the tree. Only what the browser tests need: navigate, find, click, type, read text, run a
//! script, and take screenshots.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the browser and its driver are, or why the tests cannot run.
pub fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let pick = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(env) {
            return Some(PathBuf::from(p));
        }
        names.iter().map(PathBuf::from).find(|p| p.exists())
    };
    let chromium = pick(
        "HAGGLE_CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    )
    .ok_or("no Chromium (apt-get install chromium, or set HAGGLE_CHROMIUM)")?;
    let driver = pick("HAGGLE_CHROMEDRIVER", &["/usr/bin/chromedriver"])
        .ok_or("no chromedriver (apt-get install chromium-driver, or set HAGGLE_CHROMEDRIVER)")?;
    Ok((chromium, driver))
}

pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    _driver: tokio::process::Child,
}

use haggle_testkit::free_port;

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session (a phone-sized window
    /// when `phone`).
    pub async fn start(chromium: &std::path::Path, driver: &std::path::Path) -> Browser {
        let port = free_port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = haggle_tls::client();
        let base = format!("http://127.0.0.1:{port}");
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not start on port {port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-extensions"]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session reply");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"));
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            _driver: child,
        }
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
            .json()
            .await
            .expect("WebDriver reply");
        if r["value"]["error"].is_string() {
            return Err(r["value"].clone());
        }
        Ok(r["value"].clone())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Runs an action on the element matching `css`, finding it again while the page changes
    /// under it (a navigation or a live swap makes a found element stale), for up to 10 s.
    async fn on_element(
        &self,
        css: &str,
        method: reqwest::Method,
        action: &str,
        body: Option<Value>,
    ) -> Value {
        let mut last = Value::Null;
        for _ in 0..100 {
            let el = self.find(css).await;
            let path = format!("/element/{el}{action}");
            match self.try_call(method.clone(), &path, body.clone()).await {
                Ok(v) => return v,
                Err(e) if retryable(&e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("WebDriver {action} on '{css}': {e}"),
            }
        }
        panic!("WebDriver {action} on '{css}' kept failing: {last}");
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// The element matching a CSS selector (waits up to 5 s for it to appear).
    pub async fn find(&self, css: &str) -> String {
        for _ in 0..50 {
            let r: Value = self
                .http
                .post(format!("{}/element", self.session))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("find element")
                .json()
                .await
                .expect("reply");
            if let Some(id) = r["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element '{css}' on {}", self.url().await);
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "/click", Some(json!({})))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(
            css,
            reqwest::Method::POST,
            "/value",
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "/text", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits up to `secs` for `css`'s text to contain `needle`; returns the text.
    pub async fn wait_for_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text(css).await;
            if t.contains(needle) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "'{needle}' did not appear in '{css}' within {secs} s; it reads:\n{t}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot as `target/web-screenshots/NAME.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Signs in through the sign-in form, as a person would.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/signin")).await;
        self.type_into("#token", token).await;
        self.click("form[action='/signin'] button[type=submit]")
            .await;
        self.wait_for_text("header", "Signed in as", 10).await;
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// An element that went away between finding and using it (the page navigated or a live update
/// swapped it). chromedriver reports the latter sometimes as an `unknown error` saying the node
/// "does not belong to the document", not as a stale reference.
fn retryable(e: &Value) -> bool {
    matches!(
        e["error"].as_str(),
        Some("stale element reference" | "no such element" | "element click intercepted")
    ) || (e["error"].as_str() == Some("unknown error")
        && e["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not belong to the document")))
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("web-screenshots")
}

//! A real Chromium, headless, driven over WebDriver: Debian's `chromium` and
//! `chromium-driver` (installed by `.ci/setup-deps`), with fantoccini. The
//! profile is fresh and background networking is off, so the browser talks to
//! loopback only.

use crate::process::ChildProcess;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Browser {
    pub client: Client,
    driver: ChildProcess,
    _profile: tempfile::TempDir,
}

/// Killed, chromedriver leaves its Chromium running: the driver leads its own
/// process group, and the whole group goes.
impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.driver.id() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{id}")])
                .status();
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session.
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; run .ci/setup-deps)");
        let driver = ChildProcess::new(child, log);
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            format!(
                "--user-data-dir={}",
                profile.path().join("chrome").display()
            ),
        ]);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("typing");
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    /// Clicks `css` (a submit button or link) and waits until the next page
    /// has loaded: the current one is marked, and the wait ends on a page
    /// without the mark.
    pub async fn click_and_wait(&self, css: &str) {
        let mark = "document.documentElement.dataset.left = 'yes'; return true;";
        self.client
            .execute(mark, vec![])
            .await
            .expect("marking the page");
        self.click(css).await;
        let loaded = "return document.readyState === 'complete' \
                      && document.documentElement.dataset.left !== 'yes';";
        for _ in 0..200 {
            if let Ok(serde_json::Value::Bool(true)) = self.client.execute(loaded, vec![]).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page after clicking {css}: {}", self.source().await);
    }

    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap_or_default()
    }

    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Waits up to 10 s for `css` to exist.
    pub async fn wait_for(&self, css: &str) {
        for _ in 0..200 {
            if self.client.find(Locator::Css(css)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{css} never appeared on {}: {}",
            self.url().await,
            self.source().await
        );
    }
}

//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// A chromedriver process and one browser session on it; both end on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium profile.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()),
        )
        .arg(format!("--port={port}"))
        // A group of its own, which Chromium joins, so that a failed test (which cannot
        // end the session politely) still leaves no browser behind.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is not installed; run scripts/test, which installs chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1100,700",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if Instant::now() > deadline => {
                    panic!("chromedriver did not start a browser: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Follows a workspace link and waits until its terminal is connected to the shell.
    pub async fn open_terminal(&self, link: &str, timeout: Duration) {
        self.client.goto(link).await.expect("opening the link");
        self.wait_for_terminal_connected(timeout).await;
    }

    /// Waits until the page's terminal is connected to the shell.
    pub async fn wait_for_terminal_connected(&self, timeout: Duration) {
        self.wait_for_js(
            "return window.samTerminal && window.samTerminal.state() === 'connected'",
            timeout,
            "the terminal to connect",
        )
        .await;
    }

    /// Runs `script` in the page until it returns a truthy value, or panics after `timeout`
    /// with `what` and the last value seen.
    pub async fn wait_for_js(&self, script: &str, timeout: Duration, what: &str) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(value) = self.client.execute(script, vec![]).await {
                if !matches!(value, Value::Null | Value::Bool(false)) && value != json!("") {
                    return value;
                }
                last = value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; last value: {last}");
    }

    /// The terminal's visible text, line by line, as xterm.js holds it.
    pub async fn terminal_text(&self) -> String {
        let value = self
            .client
            .execute(TERMINAL_TEXT, vec![])
            .await
            .unwrap_or(Value::Null);
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the terminal's text satisfies `done`, returning it; panics after `timeout`
    /// with what the terminal showed.
    pub async fn wait_for_terminal(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.terminal_text().await;
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the terminal shows:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the terminal on show as a person would, through xterm's own input element.
    pub async fn type_text(&self, text: &str) {
        let textarea = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(fantoccini::Locator::Css(
                "#sam-screen > .panel:not([hidden]) .xterm-helper-textarea",
            ))
            .await
            .expect("the terminal's input element");
        textarea
            .send_keys(text)
            .await
            .expect("typing into the terminal");
    }

    /// Clicks the element `css` selects, as a person would with the mouse.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("finding {css}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("clicking {css}: {error}"));
    }

    /// Presses Ctrl and `key` together, as a person would for Ctrl-C.
    pub async fn press_ctrl(&self, key: char) {
        self.type_text(&(fantoccini::key::Key::Control + &key.to_string()))
            .await;
    }

    /// Pastes `text` into the terminal through xterm's own paste path, as the clipboard
    /// would.
    pub async fn paste(&self, text: &str) {
        self.client
            .execute(
                "window.samTerminal.term.paste(arguments[0])",
                vec![json!(text)],
            )
            .await
            .expect("pasting into the terminal");
    }

    /// Runs `script` in the page once and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|error| panic!("running {script:?} in the page: {error}"))
    }

    /// The terminal's size in characters: columns, then rows.
    pub async fn terminal_size(&self) -> (u64, u64) {
        let size = self
            .eval("const t = window.samTerminal.term; return [t.cols, t.rows];")
            .await;
        (size[0].as_u64().unwrap(), size[1].as_u64().unwrap())
    }

    /// Makes `window` the one the next commands act on.
    pub async fn switch_to(&self, window: &fantoccini::wd::WindowHandle) {
        self.client
            .switch_to_window(window.clone())
            .await
            .expect("switching windows");
    }

    /// Ends the browser session politely; dropping `self` then ends the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Ends Chromium (SIGTERM to the driver's process group: killing the driver alone
    /// would orphan the browser), then the driver.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads every line of xterm's active buffer; returns "" before the terminal exists.
pub const TERMINAL_TEXT: &str = r#"
    const t = window.samTerminal && window.samTerminal.term;
    if (!t) return "";
    const b = t.buffer.active, lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
    return lines.join("\n");
"#;

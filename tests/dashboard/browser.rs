//! The page in a real browser: headless Chromium, driven by chromedriver over WebDriver
//! (plain HTTP and JSON, with reqwest), looks at an app whose breaker goes through an outage.
//!
//! Skipped, with a line saying so, when `chromium` or `chromedriver` is missing, unless
//! `TOWER_BREAKER_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs them). With
//! `TOWER_BREAKER_UPDATE_SCREENSHOT=1` the screenshot taken during the outage is written to
//! `docs/dashboard.png`; otherwise to the test's temporary directory.

use super::one_failure_in_four;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_breaker::bulkhead::{AdaptiveBulkhead, Bulkhead};
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::dashboard::Dashboard;
use tower_breaker::keyed::KeyedCircuitBreakers;
use tower_breaker::quota::Quota;
use tower_breaker::stream::{Hedge, HedgeDelay};

/// What a person must see within this time of a change.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A WebDriver session on a chromedriver started for this test (killed on drop).
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // chromedriver prints this line once it listens.
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("chromedriver exited");
            if line.contains("started successfully") {
                break;
            }
        }
        let profile = std::env::temp_dir().join(format!(
            "tower-breaker-dashboard-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1180", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let answer = post(&http, &format!("{base}/session"), &capabilities).await;
        let session = answer["sessionId"].as_str().unwrap().to_string();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            profile,
        }
    }

    async fn goto(&self, url: &str) {
        post(
            &self.http,
            &format!("{}/url", self.session),
            &json!({ "url": url }),
        )
        .await;
    }

    /// Runs `script` in the page (it calls its last argument with the result).
    async fn run_async(&self, script: &str, args: Value) -> Value {
        let url = format!("{}/execute/async", self.session);
        post(&self.http, &url, &json!({ "script": script, "args": args })).await
    }

    /// Waits in the page until the breaker `name`'s row shows `state`, at most `timeout`.
    async fn wait_for_state(&self, name: &str, state: &str, timeout: Duration) -> bool {
        let script = r#"
            const [name, state, timeout, done] = arguments;
            const start = performance.now();
            const check = () => {
              const row = [...document.querySelectorAll('tr[data-kind="breaker"]')]
                .find(r => r.dataset.name === name);
              if (row && row.dataset.state === state) return done(true);
              if (performance.now() - start > timeout) return done(false);
              requestAnimationFrame(check);
            };
            check();
        "#;
        let args = json!([name, state, timeout.as_millis() as u64]);
        self.run_async(script, args).await == json!(true)
    }

    /// Waits until the page has rendered a sample numbered `seq` or later.
    async fn wait_for_seq(&self, seq: u64) {
        let script = r#"
            const [seq, done] = arguments;
            const check = () => Number(document.body.dataset.seq || 0) >= seq
              ? done(true) : requestAnimationFrame(check);
            check();
        "#;
        self.run_async(script, json!([seq])).await;
    }

    /// The number of the last sample the page rendered.
    async fn read_seq(&self) -> u64 {
        let script = "arguments[0](Number(document.body.dataset.seq || 0));";
        self.run_async(script, json!([])).await.as_u64().unwrap()
    }

    /// What a person reads in the page: the text of every `data-field` cell of every row,
    /// and the colour each state badge is painted in.
    async fn read_page(&self) -> Value {
        let script = r#"
            const done = arguments[0];
            const rows = [...document.querySelectorAll('tr[data-kind]')].map(r => {
              const fields = {};
              for (const c of r.querySelectorAll('[data-field]')) fields[c.dataset.field] = c.textContent;
              const badge = r.querySelector('.state');
              return { kind: r.dataset.kind, name: r.dataset.name, key: r.dataset.key || null,
                       fields, colour: badge ? getComputedStyle(badge).backgroundColor : null,
                       visible: r.getBoundingClientRect().height > 0 };
            });
            done(rows);
        "#;
        self.run_async(script, json!([])).await
    }

    async fn screenshot(&self) -> Vec<u8> {
        let answer = self
            .http
            .get(format!("{}/screenshot", self.session))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        base64_decode(answer["value"].as_str().unwrap())
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// POSTs JSON to the driver; panics with its message on a WebDriver error.
async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status.is_success(), "WebDriver {url}: {status} {text}");
    value["value"].clone()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The app: `/chat` calls an upstream (down while `down` is set) through the `openai`
/// breaker; the dashboard is nested at `/dashboard`.
#[derive(Clone)]
struct App {
    breaker: CircuitBreaker,
    down: Arc<AtomicBool>,
}

async fn chat(State(app): State<App>) -> StatusCode {
    let upstream = service_fn(|down: bool| async move {
        if down {
            Err::<(), BoxError>("503".into())
        } else {
            Ok(())
        }
    });
    let mut service = tower::ServiceBuilder::new()
        .layer(app.breaker.layer())
        .service(upstream);
    let down = app.down.load(Ordering::SeqCst);
    match service.ready().await.unwrap().call(down).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn row<'a>(page: &'a Value, kind: &str, name: &str, key: Option<&str>) -> &'a Value {
    page.as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name && r["key"].as_str() == key)
        .unwrap_or_else(|| panic!("no {kind} row {name} {key:?} in {page:#}"))
}

fn pct(rate: &Value) -> String {
    rate.as_f64()
        .map_or("–".to_string(), |r| format!("{:.1}%", r * 100.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_an_outage_as_it_happens() {
    let (chromium, chromedriver) = match (find("chromium"), find("chromedriver")) {
        (Some(c), Some(d)) => (c, d),
        _ if std::env::var("TOWER_BREAKER_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("TOWER_BREAKER_REQUIRE_BROWSER=1 but chromium or chromedriver is missing")
        }
        _ => {
            eprintln!(
                "SKIPPED the_page_shows_an_outage_as_it_happens: chromium and chromedriver are \
                 not installed (apt-get install chromium chromium-driver)"
            );
            return;
        }
    };

    // The components of an LLM client during an outage of one provider.
    let openai = CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::count_based(10))
        .minimum_calls(3)
        .wait_in_open(Duration::from_secs(1))
        .permitted_calls_in_half_open(2)
        .build()
        .unwrap();
    let anthropic = one_failure_in_four("anthropic");
    let slots = Bulkhead::builder("openai")
        .max_concurrent(4)
        .max_queue(8)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| slots.try_acquire().unwrap()).collect();
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.map(drop) })
        })
        .collect();
    let adaptive = AdaptiveBulkhead::builder("anthropic")
        .initial_limit(12)
        .build()
        .unwrap();
    let models = KeyedCircuitBreakers::<String>::builder(CircuitBreaker::builder("model"))
        .build()
        .unwrap();
    for model in ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "claude-haiku"] {
        models.get(&model.to_string());
    }
    models.get(&"gpt-4o".to_string()).force_open();
    let quota = Quota::<String>::builder("openai-quota").build().unwrap();
    quota.set_limits(&"gpt-4o".to_string(), Some(500), Some(300_000));
    quota.set_limits(&"gpt-4o-mini".to_string(), Some(5_000), Some(2_000_000));
    for _ in 0..120 {
        drop(quota.acquire(&"gpt-4o".to_string(), 1_500).await.unwrap());
    }
    let mut hedge = Hedge::builder()
        .delay(HedgeDelay::fixed(Duration::from_secs(10)))
        .build(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }))
        .unwrap();
    for n in 0..5 {
        hedge.ready().await.unwrap().call(n).await.unwrap();
    }

    let dashboard = Dashboard::builder()
        .tick(Duration::from_millis(200))
        .build()
        .unwrap();
    dashboard
        .register_breaker(&openai)
        .register_breaker(&anthropic)
        .register_bulkhead(&slots)
        .register_adaptive(&adaptive)
        .register_keyed(&models)
        .register_quota(&quota)
        .register_hedge("anthropic-hedge", &hedge);
    let app_state = App {
        breaker: openai.clone(),
        down: Arc::new(AtomicBool::new(false)),
    };
    let app = Router::new()
        .route("/chat", get(chat))
        .with_state(app_state.clone())
        .nest("/dashboard", dashboard.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let chat = || async {
        client
            .get(format!("http://{addr}/chat"))
            .send()
            .await
            .unwrap()
            .status()
    };

    let browser = Browser::start(&chromium, &chromedriver).await;
    browser.goto(&format!("http://{addr}/dashboard")).await;
    assert!(
        browser
            .wait_for_state("openai", "closed", Duration::from_secs(10))
            .await
    );

    // The outage: three failures open the breaker, the next two calls are rejected.
    app_state.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(chat().await, StatusCode::SERVICE_UNAVAILABLE);
    }
    let opened = Instant::now();
    for _ in 0..2 {
        assert_eq!(chat().await, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert!(browser.wait_for_state("openai", "open", SHOWN_WITHIN).await);
    assert!(
        opened.elapsed() < SHOWN_WITHIN,
        "shown open after {:?}",
        opened.elapsed()
    );
    let page = browser.read_page().await;
    let shown = row(&page, "breaker", "openai", None);
    assert_eq!(shown["fields"]["state"], "open");
    assert_eq!(shown["colour"], "rgb(198, 40, 40)", "open is red");
    assert_eq!(shown["fields"]["rejected"], "2");
    assert!(shown["visible"].as_bool().unwrap());
    let closed = row(&page, "breaker", "anthropic", None);
    assert_eq!(closed["colour"], "rgb(46, 125, 50)", "closed is green");

    // A few more ticks of the outage in the sparklines before the picture.
    let seq = browser.read_seq().await;
    browser.wait_for_seq(seq + 8).await;
    let png = browser.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let shot = if std::env::var("TOWER_BREAKER_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
    };
    std::fs::write(&shot, &png).unwrap();

    // Recovery: after the open wait one good call makes it half-open (one of two probes),
    // the second closes it.
    app_state.down.store(false, Ordering::SeqCst);
    if let Some(wait) = openai.retry_after() {
        tokio::time::sleep(wait).await;
    }
    assert_eq!(chat().await, StatusCode::OK);
    let probed = Instant::now();
    assert!(
        browser
            .wait_for_state("openai", "half_open", SHOWN_WITHIN)
            .await
    );
    assert!(probed.elapsed() < SHOWN_WITHIN);
    assert_eq!(chat().await, StatusCode::OK);
    let recovered = Instant::now();
    assert!(
        browser
            .wait_for_state("openai", "closed", SHOWN_WITHIN)
            .await
    );
    assert!(recovered.elapsed() < SHOWN_WITHIN);

    // What the page shows is what the JSON snapshot says. The quota refills between two
    // samples, so the page's figure lies between a snapshot taken before it and one after.
    let json = |body: String| serde_json::from_str::<Value>(&body).unwrap();
    let url = format!("http://{addr}/dashboard/snapshot.json");
    let before = json(client.get(&url).send().await.unwrap().text().await.unwrap());
    browser
        .wait_for_seq(before["seq"].as_u64().unwrap() + 1)
        .await;
    let page = browser.read_page().await;
    let after = json(client.get(&url).send().await.unwrap().text().await.unwrap());

    for b in before["breakers"].as_array().unwrap() {
        let shown = &row(&page, "breaker", b["name"].as_str().unwrap(), None)["fields"];
        assert_eq!(
            shown["state"],
            b["state"].as_str().unwrap().replace('_', "-")
        );
        assert_eq!(shown["failure_rate"], pct(&b["failure_rate"]));
        assert_eq!(shown["calls"], b["calls"].to_string());
        assert_eq!(shown["failed_calls"], b["failed_calls"].to_string());
        assert_eq!(shown["rejected"], b["rejected"].to_string());
    }
    let bh = &before["bulkheads"][0];
    let shown = &row(&page, "bulkhead", "openai", None)["fields"];
    assert_eq!(
        shown["active"],
        format!("{} / {}", bh["active"], bh["max_concurrent"])
    );
    assert_eq!(
        shown["queued"],
        format!("{} / {}", bh["queued"], bh["max_queue"])
    );
    assert_eq!(shown["queued"], "3 / 8");
    let shown = &row(&page, "adaptive", "anthropic", None)["fields"];
    assert_eq!(shown["limit"], before["adaptive"][0]["limit"].to_string());
    let keyed = &before["keyed"][0];
    for k in keyed["listed"].as_array().unwrap() {
        let shown = row(&page, "keyed-key", "model", k["key"].as_str());
        assert_eq!(
            shown["fields"]["state"],
            k["state"].as_str().unwrap().replace('_', " ")
        );
    }
    let shown = &row(&page, "hedge", "anthropic-hedge", None)["fields"];
    assert_eq!(shown["calls"], "5");
    assert_eq!(shown["hedge_rate"], pct(&before["hedges"][0]["hedge_rate"]));
    for (i, q) in before["quotas"][0]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let shown = &row(&page, "quota-key", "openai-quota", q["key"].as_str())["fields"];
        let later = &after["quotas"][0]["listed"][i];
        assert_eq!(later["key"], q["key"]);
        let text = shown["requests_left"].as_str().unwrap();
        let (left, limit) = text.split_once(" / ").unwrap();
        let left: f64 = left.parse().unwrap();
        assert_eq!(limit, q["requests_limit"].to_string());
        let low = q["requests_left"].as_f64().unwrap().floor();
        let high = later["requests_left"].as_f64().unwrap().floor();
        assert!(low <= left && left <= high, "{low} <= {left} <= {high}");
    }

    browser.quit().await;
    drop(held);
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    server.abort();
}

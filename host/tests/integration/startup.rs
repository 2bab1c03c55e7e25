//! Start-up with big components: each service serves as soon as it is compiled and open,
//! while the Python and JavaScript components (tens of seconds to compile cold) are still
//! compiling; `/healthz` names the ones still compiling until every service is loaded.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{repo_root, request, signal, silo_bin, try_request, wait_timeout};

/// A free loopback port (bound, then released for the host to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_serves_as_soon_as_it_is_ready_while_big_ones_compile() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("silo.toml"))
        .unwrap()
        .replace(
            "\"components/target/",
            &format!("\"{}/components/target/", root.display()),
        );
    let path = dir.path().join("silo.toml");
    std::fs::write(&path, manifest).unwrap();
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    // A code cache of its own, empty: every component compiles cold, as on a fresh clone.
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut child = Command::new(silo_bin())
        .args([
            "run",
            "--threads",
            "2",
            "--listen",
            &http,
            "--admin",
            &admin,
        ])
        .arg("--manifest")
        .arg(&path)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("SILO_CODE_CACHE", &cache)
        .env("SILO_ADMIN_TOKEN", "test-token-0123456789abcdef0123456789")
        .env("SILO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, serving) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });

    // Users serves while recommendations (Python) still compiles.
    let started = Instant::now();
    let health = loop {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "users never served while recommendations compiled"
        );
        // Until the ports are bound, nothing answers.
        let Some(r) = try_request("GET", &admin, "/healthz", None).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if r.status == 200 {
            panic!(
                "every service was ready before users was seen serving alone: {}",
                r.text()
            );
        }
        if r.status == 503 {
            let h = r.json();
            if h["services"]["users"] == "ready" && h["services"]["recommendations"] == "compiling"
            {
                break h;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["status"], "starting", "{health}");
    assert_eq!(health["error"]["code"], "starting", "{health}");
    let compiling: Vec<&str> = health["compiling"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(compiling.contains(&"recommendations"), "{health}");
    assert!(!compiling.contains(&"users"), "{health}");
    let message = health["error"]["message"].as_str().unwrap();
    assert!(message.contains("compiling: "), "{message}");
    assert!(message.contains("recommendations"), "{message}");
    assert!(
        serving.try_recv().is_err(),
        "the serving line comes once all are loaded"
    );

    let r = request(
        "POST",
        &http,
        "/users",
        Some(r#"{"email":"early@example.com","name":"Early"}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json()["id"].as_str().unwrap().to_string();
    // A change whose event the JavaScript notifications service, not yet open, must still
    // receive once it is: the event waits in users' outbox, it is not lost.
    let r = request(
        "PUT",
        &http,
        &format!("/users/{user}"),
        Some(r#"{"name":"Early Bird"}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request("GET", &http, "/recommendations/prd_x", None, &[]).await;
    if r.status != 200 {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "starting", "{}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("service `recommendations` is still starting ("),
            "{message}"
        );
    }
    let r = request("GET", &http, "/nobody-serves-this", None, &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "no_route", "{}", r.text());

    // Then every service: the serving line, /healthz 200, and the late ones serve.
    let line = serving
        .recv_timeout(Duration::from_secs(400))
        .unwrap_or_else(|_| panic!("silo did not finish starting: {:?}", child.try_wait()));
    assert!(line.starts_with("silo: serving http://"), "{line}");
    let r = request("GET", &admin, "/healthz", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request("GET", &http, "/recommendations/prd_x", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let wait = Instant::now();
    loop {
        let r = request(
            "GET",
            &http,
            &format!("/notifications?userId={user}"),
            None,
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let list = r.json()["notifications"].as_array().unwrap().clone();
        if !list.is_empty() {
            assert_eq!(list.len(), 1, "{list:?}");
            break;
        }
        assert!(
            wait.elapsed() < Duration::from_secs(60),
            "the profile change made while notifications compiled never reached it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&child, "TERM");
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

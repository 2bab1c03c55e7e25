//! The comparison step of `make bench`'s lookup scenario, run by `make test`: silo's products
//! service and the native baseline (`native-lookup`) must answer the same lookups with the
//! same JSON, or the benchmark stops (`bench-client compare`). Here a change to what
//! products returns fails CI, not the benchmark.
//!
//! The same steps as `scripts/bench.sh`: seed products through silo, stop it, copy its
//! SQLite file, restart silo on its data and start `native-lookup` on the copy, compare.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A binary of the silo workspace, built beside this crate's own binaries.
fn workspace_bin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_bench-client"))
        .parent()
        .expect("the binaries' folder");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `make build` (make test does), or `cargo build --release -p silo`",
        path.display()
    );
    path
}

/// A started server and the address from the first line it printed.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `cmd` and waits (up to 120 s) for its first stdout line to contain `marker`,
    /// followed by the address.
    fn start(mut cmd: Command, marker: &str) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting a server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("{cmd:?} printed nothing within 120 s");
            }
        };
        let addr = line
            .split(marker)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("{cmd:?}: no `{marker}` in {line:?}"))
            .to_string();
        Server { child, addr }
    }

    /// SIGTERM, then waits up to 30 s for a clean exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                assert!(status.success(), "stopped with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn silo(manifest: &Path, data: &Path) -> Server {
    let mut cmd = Command::new(workspace_bin("silo"));
    cmd.args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--threads", "2", "--manifest"])
        .arg(manifest)
        .arg("--data")
        .arg(data)
        .env("SILO_LOG", "warn");
    Server::start(cmd, "serving http://")
}

fn bench_client(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(args)
        .output()
        .expect("running bench-client");
    assert!(
        out.status.success(),
        "bench-client {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn silo_and_native_lookup_answer_alike() {
    let products = repo_root().join("components/target/wasm32-wasip2/release/products.wasm");
    assert!(
        products.is_file(),
        "{} is not built: run `make components` (make test does)",
        products.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("products.toml");
    // As scripts/bench.sh writes it.
    std::fs::write(
        &manifest,
        format!(
            "[services.products]\ncomponent = \"{}\"\nroute = \"/products\"\npublishes = [\"ProductCreated\", \"ProductUpdated\"]\n[services.products.stores.main]\n",
            products.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("lookup-data");
    let ids = dir.path().join("ids.txt");

    let seeding = silo(&manifest, &data);
    bench_client(&[
        "seed",
        "--base",
        &format!("http://{}", seeding.addr),
        "--count",
        "25",
        "--out",
        ids.to_str().unwrap(),
    ]);
    seeding.stop();

    let native_dir = dir.path().join("native");
    std::fs::create_dir_all(&native_dir).unwrap();
    let store = data.join("stores/products/main.db");
    assert!(store.is_file(), "silo kept no {}", store.display());
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", store.display()));
        if from.is_file() {
            std::fs::copy(&from, native_dir.join(format!("main.db{suffix}"))).unwrap();
        }
    }

    let serving = silo(&manifest, &data);
    let mut native = Command::new(env!("CARGO_BIN_EXE_native-lookup"));
    native.arg("--db").arg(native_dir.join("main.db")).args([
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
    ]);
    let native = Server::start(native, "listening on ");
    bench_client(&[
        "compare",
        "--a",
        &format!("http://{}", serving.addr),
        "--b",
        &format!("http://{}", native.addr),
        "--ids",
        ids.to_str().unwrap(),
    ]);
    serving.stop();
    drop(native);
}

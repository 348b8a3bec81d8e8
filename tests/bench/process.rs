//! The release webhook as its own process, for figures that must not include the benchmark's own
//! memory (its RSS from `/proc`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::common;

pub struct Webhook {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Webhook {
    /// `serve` with `policy` (YAML) against the XNAT at `xnat_url`; waits until it answers.
    pub fn start(xnat_url: &str, policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = common::TestCa::new();
        let (cert, key) = ca.write_pair(dir.path());
        let credentials = dir.path().join("xnat");
        let secret = format!("{}:{}", common::SVC_USER, common::SVC_PASSWORD);
        std::fs::write(&credentials, secret).unwrap();
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).unwrap();
        let (addr, metrics) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_jupyter-xnat-webhook"))
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(["--probe-listen", "off"])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--policy")
            .arg(&policy_path)
            .arg("--xnat-credentials")
            .arg(&credentials)
            .args(["--xnat-url", xnat_url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Self {
            child,
            addr,
            ca_pem: ca.pem,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn client(&self) -> reqwest::Client {
        common::https_client(&self.ca_pem)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

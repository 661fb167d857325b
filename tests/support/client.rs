//! HTTP clients for the loopback tests: raw bytes over a `TcpStream` (exactly what curl or
//! `requests` put on the wire), and the real curl and Python `requests` when they are installed.
//! Under CI (`CI` set) a missing curl or `requests` fails the test instead of skipping it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `bytes` on a new connection and reads one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write request");
    read_reply(&mut s)
}

/// Reads one response (head, then `Content-Length` bytes or up to EOF).
pub fn read_reply(s: &mut TcpStream) -> Reply {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut reply = parse_head(&String::from_utf8_lossy(&buf[..head_end]));
    let mut body = buf[head_end..].to_vec();
    match reply
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).expect("read body");
                assert!(n > 0, "body cut short");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
    }
    reply.body = String::from_utf8_lossy(&body).into_owned();
    reply
}

fn parse_head(head: &str) -> Reply {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: String::new(),
    }
}

fn missing(what: &str) -> Option<Reply> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required under CI (.ci/python-clients.sh installs it)");
    }
    eprintln!("notice: {what} is not available here; skipping that client");
    None
}

fn has_requests() -> bool {
    Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Python `requests.get(url, auth=HTTPBasicAuth(user, password), headers=...)`.
pub fn python_requests(
    url: &str,
    auth: Option<(&str, &str)>,
    headers: &[(String, String)],
) -> Option<Reply> {
    if !has_requests() {
        return missing("python3 with requests");
    }
    let script = r#"
import json, sys, requests
from requests.auth import HTTPBasicAuth
url, auth, headers = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
r = requests.get(url, auth=HTTPBasicAuth(*auth) if auth else None, headers=dict(headers),
                 allow_redirects=False, timeout=10)
print(json.dumps({"status": r.status_code, "headers": list(r.headers.items()), "body": r.text}))
"#;
    let auth = serde_json::to_string(&auth).expect("json");
    let headers = serde_json::to_string(headers).expect("json");
    let out = Command::new("python3")
        .args(["-c", script, url, &auth, &headers])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python output");
    Some(Reply {
        status: v["status"].as_u64().expect("status") as u16,
        headers: v["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or_default().to_string(),
                    p[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: v["body"].as_str().unwrap_or_default().to_string(),
    })
}

/// `curl -s -i [-u USER] url -H ...`.
pub fn curl(url: &str, user: Option<&str>, headers: &[(String, String)]) -> Option<Reply> {
    if Command::new("curl").arg("--version").output().is_err() {
        return missing("curl");
    }
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10", url]);
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut r = parse_head(head);
    r.body = body.to_string();
    Some(r)
}

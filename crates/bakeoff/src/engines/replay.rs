//! Tests only: a loopback HTTP server that answers each connection with the next recorded reply and
//! keeps the requests it got. It lets a client's live HTTP path be tested on recorded fixtures of an
//! engine that cannot run on the build machines (Ollama); real engines are tested for real.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as received: method and path, and the JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
}

pub struct Replay {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
}

impl Replay {
    /// Serve `replies` (status, body), one per connection, then stop.
    pub fn serve(replies: Vec<(u16, String)>) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let thread = std::thread::spawn(move || {
            for (status, body) in replies {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let request = read_request(&mut reader);
                log.lock().expect("log").push(request);
                let mut stream = reader.into_inner();
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            }
        });
        Replay {
            url,
            received,
            thread: Some(thread),
        }
    }

    /// Wait for every reply to be served and return the requests received.
    pub fn finish(mut self) -> Vec<Received> {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("replay thread");
        }
        self.received.lock().expect("log").clone()
    }
}

fn read_request(reader: &mut impl BufRead) -> Received {
    let mut line = String::new();
    reader.read_line(&mut line).expect("request line");
    let path = line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("body");
    Received {
        path,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

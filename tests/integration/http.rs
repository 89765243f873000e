//! A real HTTP/1.1 server on 127.0.0.1 for the download tests, serving
//! files from memory. It honours `Range: bytes=N-`, logs every request,
//! and can misbehave on purpose: answer 500, cut a body short, or leave
//! out a file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// Answer HTTP 500 to this many requests first.
    pub errors_500: usize,
    /// Send only this many bytes of the body (with the full Content-Length)
    /// on this many requests, then close the connection.
    pub truncate_at: Option<usize>,
    pub truncations: usize,
    /// Answer a Range request with the whole file (200), as some servers do.
    pub ignore_range: bool,
    /// Send this many bytes of the body, then go silent for `stall_secs`.
    pub stall_at: Option<usize>,
    pub stall_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range_from: Option<u64>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    faults: BTreeMap<String, Fault>,
    log: Vec<Request>,
}

pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Server { base, state }
    }

    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), bytes.into());
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(path);
    }

    pub fn fault(&self, path: &str, f: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(path.to_string(), f);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    /// The paths requested, in order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    /// Where each request for `path` asked to start (`None`: no Range).
    pub fn ranges(&self, path: &str) -> Vec<Option<u64>> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .map(|r| r.range_from)
            .collect()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn serve(conn: TcpStream, st: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_from = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_from = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let (body, status, truncate, stall) = {
        let mut s = st.lock().unwrap();
        s.log.push(Request {
            path: path.clone(),
            range_from,
        });
        let mut truncate = None;
        let mut forced_500 = false;
        let mut stall = None;
        if let Some(f) = s.faults.get(&path) {
            if f.ignore_range {
                range_from = None;
            }
            stall = f.stall_at.map(|n| (n, f.stall_secs));
        }
        if let Some(f) = s.faults.get_mut(&path) {
            if f.errors_500 > 0 {
                f.errors_500 -= 1;
                forced_500 = true;
            } else if f.truncations > 0 {
                f.truncations -= 1;
                truncate = f.truncate_at;
            }
        }
        match (forced_500, s.files.get(&path)) {
            (true, _) => (b"server error".to_vec(), 500, None, None),
            (false, Some(b)) => (b.clone(), 200, truncate, stall),
            (false, None) => (b"not found".to_vec(), 404, None, None),
        }
    };
    let mut out = conn;
    if status != 200 {
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        out.write_all(&body)?;
        return Ok(());
    }
    let from = range_from.unwrap_or(0) as usize;
    if range_from.is_some() && from >= body.len() {
        write!(
            out,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        return Ok(());
    }
    let part = &body[from..];
    if range_from.is_some() {
        write!(
            out,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len().saturating_sub(1),
            body.len(),
            part.len()
        )?;
    } else {
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            part.len()
        )?;
    }
    if let Some((n, secs)) = stall {
        out.write_all(&part[..n.min(part.len())])?;
        out.flush()?;
        std::thread::sleep(std::time::Duration::from_secs(secs));
        return Ok(());
    }
    match truncate {
        Some(n) => out.write_all(&part[..n.min(part.len())])?,
        None => out.write_all(part)?,
    }
    out.flush()?;
    Ok(())
}

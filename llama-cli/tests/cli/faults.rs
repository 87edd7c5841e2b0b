//! Faults, each one a test (docs/RELIABILITY.md lists them with what happened and what was
//! lost): a process killed while it saves a session file, a full disk during a server's
//! session save, a client that stops reading, clients that send half a request, a thousand
//! idle connections, the model file removed after start, SIGTERM under load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{bearer, chat_body, send_head, EventStream, Server};
use crate::support::model;

/// A prompt of about 2,400 tokens: its saved state is tens of megabytes, so saving it takes
/// long enough to be interrupted.
fn long_prompt() -> String {
    let sentence = "The quick brown fox jumps over the lazy dog while the farmer counts sheep. ";
    format!(
        "{}Summarise the text above in one word:",
        sentence.repeat(150)
    )
}

/// `prompt` on the long prompt with `--prompt-cache cache` (when given): greedy, 8 tokens.
fn prompt_command(cache: Option<&std::path::Path>) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("llama-cli"));
    cmd.args(["prompt", "-m"])
        .arg(model())
        .args(["-c", "4096", "-n", "8", "--temp", "0", "-t", "2", "--stats"]);
    if let Some(cache) = cache {
        cmd.arg("--prompt-cache").arg(cache);
    }
    cmd.arg(long_prompt());
    cmd
}

#[test]
fn a_session_file_killed_mid_save_is_never_loaded_torn() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("long.session");
    let partial = dir.path().join("long.session.tmp");
    // The reference saves its own cache: a run on a cache re-evaluates the prompt's last token
    // alone, which may change a greedy answer from one evaluated in one piece.
    let reference = prompt_command(Some(&dir.path().join("reference.session")))
        .output()
        .unwrap();
    assert!(reference.status.success(), "{reference:?}");

    // SIGKILL as soon as the temporary file of the save appears (it exists from the first
    // byte written until the rename that completes the save).
    let mut caught = false;
    for _ in 0..5 {
        let _ = std::fs::remove_file(&cache);
        let mut child = prompt_command(Some(&cache))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if partial.exists() {
                child.kill().unwrap();
                caught = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let status = child.wait().unwrap();
        if caught {
            assert!(!status.success(), "killed, yet {status:?}");
            break;
        }
    }
    assert!(caught, "the save was never caught in progress in five runs");
    assert!(partial.exists(), "the torn temporary file is left behind");
    // The torn state never got the final name (the rename is the save's last step, after
    // the sync); if the kill landed after it, the file is whole and is used below.
    let whole_before = cache.exists();

    // The next run evaluates afresh (or uses a whole file), answers as without a cache, and
    // saves a whole file over the torn temporary one.
    let out = prompt_command(Some(&cache)).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&reference.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !whole_before {
        assert!(stderr.contains(": 0 of "), "{stderr}");
    }
    assert!(cache.exists() && !partial.exists());

    // And that file is used by the run after.
    let out = prompt_command(Some(&cache)).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&reference.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(": 0 of "),
        "the saved prompt was reused: {stderr}"
    );
}

/// Two chat requests on one sequence whose prompts share only the template's start: the second
/// makes the server save the first session (it evicts it). Returns both answers.
fn two_conversations(server: &Server) -> (String, String) {
    let mut answers = Vec::new();
    for topic in ["the moon and its phases", "bread and how it is baked"] {
        let question = format!(
            "Tell me about {topic}. {}",
            "Please be detailed and careful. ".repeat(12)
        );
        let r = server.post("/v1/chat/completions", &chat_body(&question, 16, false));
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!answer.trim().is_empty());
        answers.push(answer);
    }
    (answers[0].clone(), answers[1].clone())
}

#[test]
fn a_full_disk_during_a_session_save_fails_the_save_not_the_request_or_the_server() {
    let extra = ["--parallel", "1", "--api-key", crate::serve::KEY];
    // Reference: the save succeeds.
    let healthy = Server::start(&extra);
    let (first, second) = two_conversations(&healthy);
    assert_eq!(healthy.metric("llama_kv_evictions_total"), 1.0);
    assert!(healthy.metric("llama_session_save_seconds_total") > 0.0);
    assert!(healthy.metric("llama_session_save_pause_max_seconds") > 0.0);
    drop(healthy);

    // RLIMIT_FSIZE of 32 KiB (SIGXFSZ ignored, so a write past it fails with EFBIG, as a full
    // disk fails with ENOSPC): the server's only files are its session files.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("llama-cli"))
        .args(Server::args(&extra));
    let limited = Server::spawn(cmd);
    let (first_limited, second_limited) = two_conversations(&limited);
    assert_eq!((first_limited, second_limited), (first, second));
    assert_eq!(limited.metric("llama_kv_evictions_total"), 0.0);
    assert_eq!(limited.metric("llama_kv_sessions_dropped_total"), 1.0);
    assert!(
        limited.log().contains("could not save an evicted session"),
        "{}",
        limited.log()
    );
    let r = limited.request("GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    let r = limited.post("/v1/chat/completions", &chat_body("Say hi.", 4, false));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_client_that_stops_reading_does_not_stall_the_others() {
    let server = Server::start(&["--parallel", "2", "--api-key", crate::serve::KEY]);
    // A stream whose reader takes nothing (a 4 KiB receive buffer).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], server.port)).into())
        .unwrap();
    let mut stalled: TcpStream = socket.into();
    let body = json!({"prompt": "Count from 1 to 500: 1, 2, 3,", "max_tokens": 400,
                      "temperature": 0, "stream": true})
    .to_string();
    send_head(
        &mut stalled,
        "POST",
        "/v1/completions",
        &[
            ("authorization", &bearer()),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    // On loopback the kernel's buffers (the server's send buffer grows to about a megabyte)
    // take this whole stream, so the server never sees the stall; when a stream does back
    // up into the engine, the engine pauses only that sequence (llama-core's engine test
    // `a_dropped_or_slow_consumer_never_blocks_the_others`).
    std::thread::sleep(Duration::from_secs(2));

    // Meanwhile other requests are answered, one after another.
    let started = Instant::now();
    for _ in 0..3 {
        let r = server.post("/v1/chat/completions", &chat_body("Say hi.", 16, false));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "three requests took {took:?}"
    );

    // The stalled client, reading at last, gets its whole stream and its final event.
    stalled
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut everything = Vec::new();
    BufReader::new(stalled)
        .read_to_end(&mut everything)
        .unwrap();
    let text = String::from_utf8_lossy(&everything);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
}

#[test]
fn a_client_that_sends_half_a_request_is_timed_out() {
    let server = Server::start(&["--timeout", "1", "--api-key", crate::serve::KEY]);
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    };
    // Half a head: the connection is closed after the timeout, with nothing answered.
    let mut half_head = connect();
    half_head
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-le")
        .unwrap();
    // Half a body: 408 after the timeout.
    let mut half_body = connect();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"messages\":",
        bearer()
    );
    half_body.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();

    // A whole request on another connection is answered meanwhile.
    let r = server.post("/v1/chat/completions", &chat_body("Say hi.", 4, false));
    assert_eq!(r.status, 200, "{}", r.text());

    let mut answer = Vec::new();
    let _ = half_head.read_to_end(&mut answer); // EOF or a reset: both are a close
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let mut reader = BufReader::new(half_body);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "timed out after {took:?}");
}

#[test]
fn a_thousand_idle_connections_do_not_stop_new_requests() {
    let server = Server::start(&["--api-key", crate::serve::KEY]);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", server.port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    let started = Instant::now();
    let r = server.post("/v1/chat/completions", &chat_body("Say hi.", 8, false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(30));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(
        fds >= 1000,
        "the server holds the idle connections: {fds} fds"
    );
    drop(idle);
    let r = server.request("GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn the_model_file_removed_after_start_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model.gguf");
    std::fs::copy(model(), &copy).unwrap();
    let ask = |server: &Server| {
        let r = server.post(
            "/v1/chat/completions",
            &chat_body("What is the capital of France?", 12, false),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("llama-cli"));
    let mut args = Server::args(&["--api-key", crate::serve::KEY]);
    args[2] = copy.clone().into();
    cmd.args(args);
    let server = Server::spawn(cmd);
    let before = ask(&server);
    std::fs::remove_file(&copy).unwrap();
    // The mapping keeps the file's pages: the same answers, whatever is paged in again.
    assert_eq!(ask(&server), before);
    let r = server.get("/ready");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// How one request of [`sigterm_under_load_gives_every_request_a_final_event`] ended.
fn final_event(stream: EventStream) -> String {
    if stream.status != 200 {
        return format!("status {}", stream.status);
    }
    let chunks: Vec<Value> = stream.collect();
    let last = chunks
        .iter()
        .rev()
        .find(|c| c["choices"][0]["finish_reason"].is_string() || c.get("error").is_some());
    match last {
        Some(c) if c.get("error").is_some() => format!("error {}", c["error"]["type"]),
        Some(c) => c["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string(),
        None => panic!("no final event in {chunks:?}"),
    }
}

#[test]
fn sigterm_under_load_gives_every_request_a_final_event() {
    let mut server = Server::start(&[
        "--parallel",
        "2",
        "--queue",
        "4",
        "--shutdown-timeout",
        "2",
        "--api-key",
        crate::serve::KEY,
    ]);
    let long = json!({"prompt": "Count from 1 to 500: 1, 2, 3,", "max_tokens": 450,
                      "temperature": 0, "stream": true});
    let mut streams: Vec<EventStream> = (0..4)
        .map(|_| EventStream::open(server.port, "/v1/completions", &long))
        .collect();
    // Two decoding (a first chunk each), two waiting in the queue.
    for s in streams.iter_mut().take(2) {
        assert_eq!(s.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("llama_queue_depth") < 2.0 {
        assert!(Instant::now() < deadline, "requests not queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, took) = server.terminate();
    assert_eq!(code, Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let ends: Vec<String> = streams.into_iter().map(final_event).collect();
    for end in &ends {
        assert!(
            ["cancelled", "length", "stop"].contains(&end.as_str()) || end.starts_with("error"),
            "{ends:?}"
        );
    }
}

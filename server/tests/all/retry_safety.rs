//! Calls a client may repeat because it lost the answer (the official
//! client retries on 502/503/504 and broken connections): closing stdin and
//! killing answer the same however often they are repeated; and the stdin
//! errors use the reference daemon's code, `STDIN_NOT_WRITABLE`.

use crate::server;

use serde_json::json;
use server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_stdin_twice_answers_204_twice() {
    let s = Server::start(&[], None);
    let pid = s.start_process(&json!({"command": "cat", "stdin_mode": "pipe"})).await;
    let close = format!("/api/v1/processes/{pid}/stdin/close");
    assert_eq!(s.post(&format!("/api/v1/processes/{pid}/stdin"), "hello\n").await.status, 204);
    let first = s.post(&close, "").await;
    assert_eq!(first.status, 204, "{}", first.text);
    let second = s.post(&close, "").await;
    assert_eq!(second.status, 204, "{}", second.text);
    // The first close did close it: cat read end of file and exited.
    let ended = s.wait_ended(pid).await;
    assert_eq!(ended["exit_code"], 0);
    assert_eq!(ended["stdin_writable"], false);
    assert_eq!(s.get(&format!("/api/v1/processes/{pid}/stdout")).await.json()["lines"], json!(["hello"]));
    // And after the exit too.
    assert_eq!(s.post(&close, "").await.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_close_is_refused_as_not_writable() {
    let s = Server::start(&[], None);
    let pid = s.start_process(&json!({"command": "sleep", "args": ["60"], "stdin_mode": "pipe"})).await;
    assert_eq!(s.post(&format!("/api/v1/processes/{pid}/stdin/close"), "").await.status, 204);
    let late = s.post(&format!("/api/v1/processes/{pid}/stdin"), "late\n").await;
    late.assert_error(400, "STDIN_NOT_WRITABLE");
    assert!(
        late.json()["error"].as_str().unwrap().contains(&format!("stdin of process {pid} is closed")),
        "{}",
        late.text
    );
    s.delete(&format!("/api/v1/processes/{pid}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_without_a_pipe_is_400_stdin_not_writable() {
    let s = Server::start(&[], None);
    let pid = s.start_process(&json!({"command": "sleep", "args": ["60"]})).await;
    for (path, body) in [("stdin", "data\n"), ("stdin/close", "")] {
        let answer = s.post(&format!("/api/v1/processes/{pid}/{path}"), body).await;
        answer.assert_error(400, "STDIN_NOT_WRITABLE");
        let message = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains("is not a pipe") && message.contains("\"stdin_mode\":\"pipe\""), "{message}");
    }
    s.delete(&format!("/api/v1/processes/{pid}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_ended_process_answers_204_every_time() {
    let s = Server::start(&[], None);
    let pid = s.start_process(&json!({"command": "sleep", "args": ["60"]})).await;
    let path = format!("/api/v1/processes/{pid}");
    assert_eq!(s.delete(&path).await.status, 204);
    assert_eq!(s.wait_ended(pid).await["status"], "signaled");
    for _ in 0..2 {
        let again = s.delete(&path).await;
        assert_eq!(again.status, 204, "{}", again.text);
    }
}

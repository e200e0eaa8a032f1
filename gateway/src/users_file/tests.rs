use std::time::Duration;

use tokio::{sync::oneshot, time::timeout};

use super::*;

const HASH: &str = "8846f7eaee8fb117ad06bdd830b7586c";
const POLL: Duration = Duration::from_millis(20);
/// Upper bound on any wait; tests normally finish in a few polls.
const PATIENCE: Duration = Duration::from_secs(10);

fn doc(names: &[&str]) -> String {
    let users: Vec<String> = names
        .iter()
        .map(|n| format!(r#""{n}": {{"ntHash": "{HASH}"}}"#))
        .collect();
    format!(r#"{{"version": 1, "users": {{{}}}}}"#, users.join(", "))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sstp-users-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a file the way editors do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn reload_count(metrics: &Metrics, result: &str) -> u64 {
    let series = format!("sstp_users_reload_total{{result=\"{result}\"}}");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap()
}

async fn until(mut condition: impl FnMut() -> bool) {
    timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("condition reached in time");
}

async fn next_names(rx: &mut watch::Receiver<Arc<UsersDocument>>) -> Vec<String> {
    timeout(PATIENCE, rx.changed())
        .await
        .expect("a new document in time")
        .unwrap();
    rx.borrow_and_update().users.keys().cloned().collect()
}

struct Watcher {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn(path: PathBuf, publisher: UsersPublisher) -> Watcher {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(watch_file(path, publisher, POLL, async move {
        let _ = stopped.await;
    }));
    Watcher { stop, task }
}

#[test]
fn an_offered_document_is_published_and_a_bad_one_keeps_the_last_good() {
    let metrics = Metrics::new();
    let (publisher, rx) = UsersPublisher::new(metrics.clone());
    assert_eq!(publisher.offer("test", &doc(&["alice", "bob"])), Ok(2));
    assert_eq!(rx.borrow().users.len(), 2);
    let err = publisher
        .offer("test", "{\"version\": 1,\n \"users\": {\"carol\": }}")
        .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(rx.borrow().users.len(), 2, "the last good document stays");
    assert_eq!(
        (
            reload_count(&metrics, "success"),
            reload_count(&metrics, "error")
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn the_watcher_loads_the_file_and_follows_rename_replacements() {
    let dir = scratch("rename");
    let path = dir.join("users.json");
    std::fs::write(&path, doc(&["alice"])).unwrap();
    let (publisher, mut rx) = UsersPublisher::new(Metrics::new());
    let watcher = spawn(path.clone(), publisher);
    assert_eq!(next_names(&mut rx).await, ["alice"]);
    replace(&path, &doc(&["alice", "bob"]));
    assert_eq!(next_names(&mut rx).await, ["alice", "bob"]);
    watcher.stop.send(()).unwrap();
    watcher.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_kubernetes_style_symlink_swap_is_picked_up() {
    // kubelet layout: users.json -> ..data/users.json, ..data -> ..<timestamp>/ swapped atomically.
    let dir = scratch("symlink");
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/users.json"), doc(&["alice"])).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/users.json", dir.join("users.json")).unwrap();
    let (publisher, mut rx) = UsersPublisher::new(Metrics::new());
    let watcher = spawn(dir.join("users.json"), publisher);
    assert_eq!(next_names(&mut rx).await, ["alice"]);

    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/users.json"), doc(&["zoe"])).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
    assert_eq!(next_names(&mut rx).await, ["zoe"]);
    drop(watcher);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_document_until_it_is_fixed() {
    let dir = scratch("broken");
    let path = dir.join("users.json");
    std::fs::write(&path, doc(&["alice"])).unwrap();
    let metrics = Metrics::new();
    let (publisher, mut rx) = UsersPublisher::new(metrics.clone());
    let _watcher = spawn(path.clone(), publisher.clone());
    assert_eq!(next_names(&mut rx).await, ["alice"]);

    replace(
        &path,
        "{\"version\": 1, \"users\": {\"bob\": {\"ntHash\": \"short\"}}}",
    );
    until(|| reload_count(&metrics, "error") == 1).await;
    assert_eq!(
        publisher.current().users.keys().collect::<Vec<_>>(),
        ["alice"]
    );

    std::fs::remove_file(&path).unwrap();
    until(|| reload_count(&metrics, "error") == 2).await;
    assert_eq!(
        publisher.current().users.len(),
        1,
        "a vanished file changes nothing"
    );

    replace(&path, &doc(&["carol"]));
    assert_eq!(next_names(&mut rx).await, ["carol"]);
    assert_eq!(
        reload_count(&metrics, "error"),
        2,
        "errors are counted once per bad version"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_file_that_appears_later_is_loaded() {
    let dir = scratch("late");
    let path = dir.join("users.json");
    let (publisher, mut rx) = UsersPublisher::new(Metrics::new());
    let _watcher = spawn(path.clone(), publisher);
    tokio::time::sleep(POLL * 3).await;
    replace(&path, &doc(&["dave"]));
    assert_eq!(next_names(&mut rx).await, ["dave"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

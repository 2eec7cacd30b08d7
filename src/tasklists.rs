//! Task lists shared between agents: replicas of the [`TaskListState`] CRDT, kept in sync over
//! pub/sub and optionally persisted.
//!
//! Each list has a random 32-byte id, and from it a pub/sub topic and a key that seals its sync
//! messages (`replica::ListChannel`): holding the id is what lets an agent join, read and change
//! a list. The sync protocol
//! (what is sent when, what a received message changes) is `replica`, free of I/O; this module
//! runs it on tokio: it publishes what a replica sends, feeds it what its subscription
//! receives, resends full states every [`ANTI_ENTROPY_PERIOD`] and when a neighbour comes up,
//! and saves the list. Messages that don't decode are dropped and counted.
//!
//! [`TaskListState`]: crate::tasklist::TaskListState
//! [`ANTI_ENTROPY_PERIOD`]: crate::tasklists::ANTI_ENTROPY_PERIOD

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::context::AgentContext;
use crate::error::{Error, Result};
use crate::events::{Event, EventStream};
use crate::identity::AgentId;
use crate::pubsub::{now_ms, Publisher, Registry, Subscription};
pub use crate::replica::ANTI_ENTROPY_PERIOD;
use crate::replica::{prompts_full_state, ListChannel, Replica, SyncMessage};
pub use crate::tasklist::{ListId, TaskStatus, TaskUpdate};
use crate::tasklist::{TaskId, TaskListState, TaskView};

/// Coalescing delay for writes to disk.
const SAVE_DELAY: Duration = Duration::from_millis(100);
const FILE_MAGIC: &[u8; 4] = b"x0xl";
const FILE_VERSION: u8 = 1;
const FILE_EXTENSION: &str = "x0xl";

/// What a replica needs from its agent to sync; absent for a local list.
struct Sync {
    publisher: Publisher,
    shared: Arc<AgentContext>,
    channel: ListChannel,
}

/// One replica of a task list.
pub struct TaskList {
    id: ListId,
    me: AgentId,
    replica: Mutex<Replica>,
    /// Last timestamp handed out, so that a burst of adds gets distinct ids.
    clock: AtomicU64,
    sync: Option<Sync>,
    store: Option<Arc<Store>>,
    dirty: AtomicBool,
    save_requested: Notify,
    /// One save of this list at a time (the background saver and close would otherwise write
    /// the same temporary file at once); also lets close wait for a save in progress.
    save_lock: Mutex<()>,
}

impl std::fmt::Debug for TaskList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskList({}, {:?})", self.id.to_hex(), self.name())
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes
}

fn nonce() -> u64 {
    u64::from_le_bytes(random())
}

impl TaskList {
    /// A list that lives only in memory and syncs with nobody (`TaskList.create` in Python).
    pub fn local(name: &str) -> Arc<Self> {
        Self::new(
            ListId::random(),
            name.to_owned(),
            AgentId(ListId::random().0),
            TaskListState::default(),
            None,
            None,
        )
    }

    fn new(
        id: ListId,
        name: String,
        me: AgentId,
        state: TaskListState,
        sync: Option<Sync>,
        store: Option<Arc<Store>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            me,
            replica: Mutex::new(Replica::new(name, state)),
            clock: AtomicU64::new(0),
            sync,
            store,
            dirty: AtomicBool::new(false),
            save_lock: Mutex::new(()),
            save_requested: Notify::new(),
        })
    }

    /// The list's id.
    pub fn id(&self) -> ListId {
        self.id
    }

    /// The list's name ("" for a joined list until a replica has answered).
    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self) -> u64 {
        let now = now_ms();
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .clock
                .compare_exchange(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Adds a task; returns its id.
    pub fn add_task(&self, title: &str, description: &str) -> Result<TaskId> {
        let now = self.tick();
        let (id, delta) = self
            .lock()
            .state
            .add_task(title, description, self.me, now, nonce());
        self.changed(delta, &[id], false);
        Ok(id)
    }

    /// Claims a task for `agent` (this agent by default). The earliest claim wins everywhere.
    pub fn claim_task(&self, id: &TaskId, agent: Option<AgentId>) -> Result<()> {
        let now = self.tick();
        let delta = self.lock().state.claim(id, agent.unwrap_or(self.me), now)?;
        self.changed(delta, &[*id], false);
        Ok(())
    }

    /// Marks a task done by this agent; an unclaimed task may be completed directly.
    pub fn complete_task(&self, id: &TaskId) -> Result<()> {
        let now = self.tick();
        let delta = self.lock().state.complete(id, self.me, now)?;
        self.changed(delta, &[*id], false);
        Ok(())
    }

    /// Removes a task.
    pub fn remove_task(&self, id: &TaskId) -> Result<()> {
        let delta = self.lock().state.remove(id)?;
        self.changed(delta, &[*id], false);
        Ok(())
    }

    /// The tasks, oldest first (the same order on every replica).
    pub fn tasks(&self) -> Vec<TaskView> {
        self.lock().state.tasks()
    }

    /// A copy of the replicated state.
    pub fn state(&self) -> TaskListState {
        self.lock().state.clone()
    }

    /// Reports, persists and (for a local change) publishes a change to `ids`.
    fn changed(&self, delta: TaskListState, ids: &[TaskId], remote: bool) {
        if let Some(sync) = &self.sync {
            let replica = self.lock();
            for id in ids {
                let (status, assignee, removed) = match replica.state.task(id) {
                    Some(task) => (
                        TaskStatus::from(&task.checkbox),
                        task.checkbox.assignee(),
                        false,
                    ),
                    None => (TaskStatus::Empty, None, true),
                };
                sync.shared.events.emit(Event::TaskUpdated(TaskUpdate {
                    list: self.id,
                    task: *id,
                    status,
                    assignee,
                    removed,
                    remote,
                }));
            }
            // A remote change came from another replica: nothing to publish.
            let message = (!remote && sync.shared.is_joined()).then(|| replica.delta(delta));
            drop(replica);
            if let Some(message) = message {
                self.send(message);
            }
        }
        self.mark_dirty();
    }

    fn mark_dirty(&self) {
        if self.store.is_some() {
            self.dirty.store(true, Ordering::Release);
            self.save_requested.notify_one();
        }
    }

    fn send(&self, message: SyncMessage) {
        let Some(sync) = &self.sync else { return };
        let payload = sync.channel.seal(&message, random());
        let publisher = sync.publisher.clone();
        let topic = sync.channel.topic().to_owned();
        // Deltas commute, so they need no ordering; a publish that fails (not joined) is
        // repaired by the next full-state exchange.
        crate::runtime::handle().spawn(async move {
            let _ = publisher.publish(&topic, Bytes::from(payload)).await;
        });
    }

    /// Sends the full state, in chunks (a new neighbour, or the periodic resend).
    pub fn send_full_state(&self) {
        let messages = self.lock().full_state();
        for message in messages {
            self.send(message);
        }
    }

    fn on_message(&self, payload: &[u8], shared: &AgentContext) {
        let now = tokio::time::Instant::now();
        let opened = self
            .sync
            .as_ref()
            .and_then(|sync| sync.channel.open(payload));
        let Some(message) = opened else {
            // Not sealed with this list's key: made without the id, or altered.
            let counters = &shared.counters;
            counters.add(&counters.dropped_malformed, 1);
            return;
        };
        let received = self.lock().receive(message, now);
        if received.named {
            self.mark_dirty();
        }
        if !received.changed.is_empty() {
            self.changed(TaskListState::default(), &received.changed, true);
        }
        for message in received.answer {
            self.send(message);
        }
    }

    /// Saves the list if it changed since the last save. Blocking: call from a blocking thread.
    fn save_if_dirty(&self, store: &Store) -> Result<()> {
        let _one_at_a_time = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = store.save(&self.persisted()) {
                self.dirty.store(true, Ordering::Release); // retried with the next change
                return Err(e);
            }
        }
        Ok(())
    }

    fn persisted(&self) -> PersistedList {
        PersistedList {
            id: self.id.0,
            name: self.name(),
            me: self.me.0,
            state: self.state(),
        }
    }
}

/// The on-disk form of a list: `"x0xl"`, version 1, postcard of this, then SHA-256 of all before.
#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedList {
    pub(crate) id: [u8; 32],
    pub(crate) name: String,
    pub(crate) me: [u8; 32],
    pub(crate) state: TaskListState,
}

/// A directory of persisted lists: `<dir>/tasklists/<list id hex>.x0xl`.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("tasklists");
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format_args!("cannot create {}", dir.display()), &e))?;
        Ok(Self { dir })
    }

    fn path(&self, id: &ListId) -> PathBuf {
        self.dir.join(format!("{}.{FILE_EXTENSION}", id.to_hex()))
    }

    pub(crate) fn encode(list: &PersistedList) -> Result<Vec<u8>> {
        let mut out = FILE_MAGIC.to_vec();
        out.push(FILE_VERSION);
        out.extend(crate::wire::encode(list)?);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &out);
        out.extend_from_slice(digest.as_ref());
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<PersistedList, String> {
        if bytes.len() < 5 + 32 || &bytes[..4] != FILE_MAGIC {
            return Err("not an x0x task list file".into());
        }
        if bytes[4] != FILE_VERSION {
            return Err(format!("unsupported version {}", bytes[4]));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - 32);
        if aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref() != checksum {
            return Err("checksum mismatch".into());
        }
        postcard::from_bytes(&body[5..]).map_err(|e| format!("does not decode: {e}"))
    }

    /// Writes atomically: a temporary file, fsync, rename over the old one.
    fn save(&self, list: &PersistedList) -> Result<()> {
        let path = self.path(&ListId(list.id));
        let tmp = path.with_extension("tmp");
        let bytes = Self::encode(list)?;
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| Error::io(format_args!("cannot save {}", path.display()), &e))
    }

    /// Loads every list; a damaged file is renamed to `*.corrupt` (never deleted) and reported.
    fn load_all(&self) -> (Vec<PersistedList>, Vec<String>) {
        let mut lists = Vec::new();
        let mut warnings = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return (lists, warnings);
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == FILE_EXTENSION))
            .collect();
        paths.sort();
        for path in paths {
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| Self::decode(&b))
            {
                Ok(list) => lists.push(list),
                Err(why) => {
                    let aside = path.with_extension(format!("{FILE_EXTENSION}.corrupt"));
                    let moved = fs::rename(&path, &aside);
                    warnings.push(match moved {
                        Ok(()) => format!(
                            "task list file {} is corrupt ({why}); it was moved to {} and not loaded",
                            path.display(),
                            aside.display()
                        ),
                        Err(e) => format!(
                            "task list file {} is corrupt ({why}) and could not be moved aside ({e}); it was not loaded",
                            path.display()
                        ),
                    });
                }
            }
        }
        (lists, warnings)
    }
}

/// An agent's task lists.
pub struct TaskLists {
    me: AgentId,
    lists: Mutex<HashMap<ListId, Arc<TaskList>>>,
    publisher: Publisher,
    shared: Arc<AgentContext>,
    registry: Arc<Registry>,
    store: Option<Arc<Store>>,
}

impl TaskLists {
    /// Opens the store (if any), loads its lists and starts syncing them. Returns the warnings
    /// about files that could not be loaded.
    pub fn start(
        me: AgentId,
        publisher: Publisher,
        shared: Arc<AgentContext>,
        registry: Arc<Registry>,
        events: EventStream,
        data_dir: Option<&Path>,
    ) -> Result<(Arc<Self>, Vec<String>)> {
        let store = data_dir.map(Store::open).transpose()?.map(Arc::new);
        let manager = Arc::new(Self {
            me,
            lists: Mutex::new(HashMap::new()),
            publisher,
            shared,
            registry,
            store,
        });
        let mut warnings = Vec::new();
        if let Some(store) = &manager.store {
            let (lists, problems) = store.load_all();
            warnings = problems;
            for list in lists {
                manager.attach(ListId(list.id), list.name, list.state)?;
            }
        }
        crate::runtime::handle().spawn(anti_entropy(Arc::downgrade(&manager), events));
        Ok((manager, warnings))
    }

    fn attach(
        self: &Arc<Self>,
        id: ListId,
        name: String,
        state: TaskListState,
    ) -> Result<Arc<TaskList>> {
        let channel = ListChannel::new(&id);
        let subscription = self.registry.subscribe(channel.topic(), 4096)?;
        let list = TaskList::new(
            id,
            name,
            self.me,
            state,
            Some(Sync {
                publisher: self.publisher.clone(),
                shared: Arc::clone(&self.shared),
                channel,
            }),
            self.store.clone(),
        );
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&list));
        // The x0x runtime, not the caller's: C and Python call this from plain threads.
        let runtime = crate::runtime::handle();
        runtime.spawn(receive(
            Arc::downgrade(&list),
            subscription,
            Arc::clone(&self.shared),
        ));
        if let Some(store) = &self.store {
            runtime.spawn(persist(Arc::downgrade(&list), Arc::clone(store)));
        }
        Ok(list)
    }

    /// Creates a new list (this agent is its first replica).
    pub fn create(self: &Arc<Self>, name: &str) -> Result<Arc<TaskList>> {
        let list = self.attach(ListId::random(), name.to_owned(), TaskListState::default())?;
        list.mark_dirty();
        list.send_full_state();
        Ok(list)
    }

    /// Joins an existing list by id: an empty replica that asks the others for their state.
    pub fn join(self: &Arc<Self>, id: ListId) -> Result<Arc<TaskList>> {
        if let Some(list) = self.get(&id) {
            return Ok(list);
        }
        let list = self.attach(id, String::new(), TaskListState::default())?;
        list.mark_dirty();
        list.send(SyncMessage::Request);
        Ok(list)
    }

    /// One list.
    pub fn get(&self, id: &ListId) -> Option<Arc<TaskList>> {
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every list, by id.
    pub fn all(&self) -> Vec<Arc<TaskList>> {
        let mut lists: Vec<_> = self
            .lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        lists.sort_by_key(|l| l.id());
        lists
    }

    /// Writes every changed list now (the agent is closing).
    pub fn flush(&self) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        for list in self.all() {
            list.save_if_dirty(store)?;
        }
        Ok(())
    }
}

async fn receive(list: Weak<TaskList>, subscription: Subscription, shared: Arc<AgentContext>) {
    while let Some(batch) = subscription.next_batch(256).await {
        let Some(list) = list.upgrade() else { return };
        for message in batch {
            if message.sender != list.me {
                list.on_message(&message.payload, &shared);
            }
        }
    }
}

async fn persist(list: Weak<TaskList>, store: Arc<Store>) {
    loop {
        let Some(strong) = list.upgrade() else { return };
        if !strong.dirty.load(Ordering::Acquire) {
            // notify_one keeps a permit, so a change between the check and here is not lost;
            // the timeout lets the task notice a dropped list.
            let _ = tokio::time::timeout(Duration::from_secs(1), strong.save_requested.notified())
                .await;
            continue;
        }
        drop(strong);
        tokio::time::sleep(SAVE_DELAY).await; // coalesce a burst of changes into one write
        let Some(strong) = list.upgrade() else { return };
        let store = Arc::clone(&store);
        // A failed save stays dirty and is retried with the next change (or at close).
        let _ = tokio::task::spawn_blocking(move || strong.save_if_dirty(&store)).await;
    }
}

async fn anti_entropy(manager: Weak<TaskLists>, events: EventStream) {
    let mut period = tokio::time::interval(ANTI_ENTROPY_PERIOD);
    period.tick().await;
    loop {
        let resend = tokio::select! {
            _ = period.tick() => true,
            batch = events.next_batch(64) => match batch {
                Some(batch) => batch.iter().any(prompts_full_state),
                None => return,
            },
        };
        let Some(manager) = manager.upgrade() else {
            return;
        };
        if resend && manager.shared.is_joined() {
            for list in manager.all() {
                list.send_full_state();
            }
        }
    }
}

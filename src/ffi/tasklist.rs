//! `X0xTaskList`: a replicated task list, and `X0xTaskBatch`, a snapshot of its tasks.
//!
//! Task list operations are synchronous: they change the local replica at once and send the
//! change to the other replicas in the background.

use std::ffi::{c_char, CString};
use std::sync::Arc;

use super::agent::X0xAgent;
use super::boundary::{
    arg_out, arg_ref, arg_str, batch_free, batch_get, batch_len, ffi_status, ffi_value,
    to_c_string, Batch,
};
use super::bytes::X0xBytes;
use super::events::task_status;
use super::identity::X0xId;
use super::status::X0xStatus;
use crate::error::Error;
use crate::identity::AgentId;
use crate::tasklist::TaskId;
use crate::tasklists::{ListId, TaskList, TaskStatus};

/// A task list replica. Opaque; release it with `x0x_task_list_free`. Thread-safe.
pub struct X0xTaskList {
    inner: Arc<TaskList>,
}

fn handle(list: Arc<TaskList>) -> *mut X0xTaskList {
    Box::into_raw(Box::new(X0xTaskList { inner: list }))
}

/// One task: a view into its `X0xTaskBatch`, valid until the batch is freed.
#[repr(C)]
#[derive(Debug)]
pub struct X0xTask {
    /// The task's id.
    pub id: X0xId,
    /// Its title, NUL-terminated UTF-8.
    pub title: *const c_char,
    /// Its description, NUL-terminated UTF-8 ("" if none).
    pub description: *const c_char,
    /// `X0X_TASK_EMPTY`, `X0X_TASK_CLAIMED` or `X0X_TASK_DONE`.
    pub status: i32,
    /// Whether `assignee` is set (claimed or done).
    pub has_assignee: bool,
    /// Who claimed or completed it.
    pub assignee: X0xId,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// The tasks of a list at one moment, oldest first (the same order on every replica). Opaque;
/// read with `x0x_task_batch_len` / `x0x_task_batch_get`, free with `x0x_task_batch_free`.
pub struct X0xTaskBatch {
    views: Vec<X0xTask>,
    // The views point into these strings.
    _strings: Vec<CString>,
}

impl Batch for X0xTaskBatch {
    type Item = X0xTask;
    fn items(&self) -> &[X0xTask] {
        &self.views
    }
}

fn parse_task_id(id: *const X0xId) -> crate::Result<TaskId> {
    // SAFETY: forwarded from the extern fn's contract: NULL or a valid X0xId.
    Ok(TaskId(unsafe { arg_ref(id, "task_id")? }.bytes))
}

/// Creates a task list on this agent, shared with every agent that joins it by id. `name` is
/// NUL-terminated UTF-8 (copied). `*out` receives the list (free with `x0x_task_list_free`).
/// Returns `X0X_OK`, `X0X_CLOSED`, `X0X_IO` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_create_task_list(
    agent: *const X0xAgent,
    name: *const c_char,
    out: *mut *mut X0xTaskList,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let name = arg_str(name, "name")?;
        let out = arg_out(out, "out")?;
        *out = handle(agent.agent().create_task_list(name)?);
        Ok(())
    })
}

/// Joins the task list `list_id` (from `x0x_task_list_id` on another agent): a replica that
/// fills up from the others and converges with them. Joining a list twice gives the same list.
/// `*out` receives it. Returns `X0X_OK`, `X0X_CLOSED` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_join_task_list(
    agent: *const X0xAgent,
    list_id: *const X0xId,
    out: *mut *mut X0xTaskList,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let id = ListId(arg_ref(list_id, "list_id")?.bytes);
        let out = arg_out(out, "out")?;
        *out = handle(agent.agent().join_task_list(id)?);
        Ok(())
    })
}

/// Writes up to `capacity` of the agent's task lists (ordered by id) into `lists` (each to be
/// freed with `x0x_task_list_free`) and their total number to `*count`. Call with `capacity` 0
/// (and `lists` NULL) to learn the count. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_task_lists(
    agent: *const X0xAgent,
    lists: *mut *mut X0xTaskList,
    capacity: usize,
    count: *mut usize,
) -> X0xStatus {
    ffi_status(|| {
        let all = arg_ref(agent, "agent")?.agent().task_lists();
        let count = arg_out(count, "count")?;
        if capacity > 0 && lists.is_null() {
            return Err(Error::invalid_argument(
                "lists must not be NULL when capacity > 0",
            ));
        }
        *count = all.len();
        for (i, list) in all.into_iter().take(capacity).enumerate() {
            *lists.add(i) = handle(list);
        }
        Ok(())
    })
}

/// Writes the problems found while loading the agent's data directory (damaged task list files,
/// which are renamed to `*.corrupt` and not loaded) to `*out` as UTF-8 lines (free with
/// `x0x_bytes_free`; empty when there are none). Each problem is reported once.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_take_warnings(
    agent: *const X0xAgent,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        *out = X0xBytes::from_vec(agent.agent().take_warnings().join("\n").into_bytes());
        Ok(())
    })
}

/// A task list that lives only in memory and syncs with nobody. `*out` receives it.
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_new_local(
    name: *const c_char,
    out: *mut *mut X0xTaskList,
) -> X0xStatus {
    ffi_status(|| {
        let name = arg_str(name, "name")?;
        let out = arg_out(out, "out")?;
        *out = handle(TaskList::local(name));
        Ok(())
    })
}

/// Writes the list's id to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_id(list: *const X0xTaskList, out: *mut X0xId) -> X0xStatus {
    ffi_status(|| {
        let list = arg_ref(list, "list")?;
        *arg_out(out, "out")? = X0xId::from(list.inner.id().0);
        Ok(())
    })
}

/// Writes the list's name (UTF-8, no NUL; empty for a joined list until a replica answers) to
/// `*out`; free it with `x0x_bytes_free`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_name(
    list: *const X0xTaskList,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        let list = arg_ref(list, "list")?;
        let out = arg_out(out, "out")?; // before allocating: an early return must not leak
        *out = X0xBytes::from_vec(list.inner.name().into_bytes());
        Ok(())
    })
}

/// Adds a task with `title` and `description` (NUL-terminated UTF-8; `description` may be NULL
/// for none) and writes its id to `*task_id_out` (may be NULL). Returns `X0X_OK` or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_add_task(
    list: *const X0xTaskList,
    title: *const c_char,
    description: *const c_char,
    task_id_out: *mut X0xId,
) -> X0xStatus {
    ffi_status(|| {
        let list = arg_ref(list, "list")?;
        let title = arg_str(title, "title")?;
        let description = if description.is_null() {
            ""
        } else {
            arg_str(description, "description")?
        };
        let id = list.inner.add_task(title, description)?;
        if let Some(out) = task_id_out.as_mut() {
            *out = X0xId::from(id.0);
        }
        Ok(())
    })
}

/// Claims a task for `agent_id` (NULL: this agent). If another claim is earlier, it stays the
/// winner on every replica (ties: the lowest agent id). Returns `X0X_OK`, `X0X_NOT_FOUND` (no
/// such task) or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_claim_task(
    list: *const X0xTaskList,
    task_id: *const X0xId,
    agent_id: *const X0xId,
) -> X0xStatus {
    ffi_status(|| {
        let list = arg_ref(list, "list")?;
        let agent = agent_id.as_ref().map(|id| AgentId(id.bytes));
        list.inner.claim_task(&parse_task_id(task_id)?, agent)
    })
}

/// Marks a task done by this agent. Completing an unclaimed task is allowed. Returns `X0X_OK`,
/// `X0X_NOT_FOUND` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_complete_task(
    list: *const X0xTaskList,
    task_id: *const X0xId,
) -> X0xStatus {
    ffi_status(|| {
        arg_ref(list, "list")?
            .inner
            .complete_task(&parse_task_id(task_id)?)
    })
}

/// Removes a task (a concurrent re-add on another replica wins). Returns `X0X_OK`,
/// `X0X_NOT_FOUND` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_remove_task(
    list: *const X0xTaskList,
    task_id: *const X0xId,
) -> X0xStatus {
    ffi_status(|| {
        arg_ref(list, "list")?
            .inner
            .remove_task(&parse_task_id(task_id)?)
    })
}

/// Writes a snapshot of the list's tasks to `*out` (free with `x0x_task_batch_free`).
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_tasks(
    list: *const X0xTaskList,
    out: *mut *mut X0xTaskBatch,
) -> X0xStatus {
    ffi_status(|| {
        let list = arg_ref(list, "list")?;
        let out = arg_out(out, "out")?;
        let mut strings = Vec::new();
        let views = list
            .inner
            .tasks()
            .into_iter()
            .map(|task| {
                let title = to_c_string(&task.title);
                let description = to_c_string(&task.description);
                let view = X0xTask {
                    id: X0xId::from(task.id.0),
                    title: title.as_ptr(),
                    description: description.as_ptr(),
                    status: task_status(TaskStatus::from(&task.checkbox)),
                    has_assignee: task.checkbox.assignee().is_some(),
                    assignee: X0xId::from(task.checkbox.assignee().map_or([0; 32], |a| a.0)),
                    created_ms: task.created_ms,
                    updated_ms: task.updated_ms,
                };
                // Moving a CString moves only its pointer; the bytes stay put.
                strings.push(title);
                strings.push(description);
                view
            })
            .collect();
        *out = Box::into_raw(Box::new(X0xTaskBatch {
            views,
            _strings: strings,
        }));
        Ok(())
    })
}

/// The number of tasks in `batch` (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_task_batch_len(batch: *const X0xTaskBatch) -> usize {
    batch_len(batch)
}

/// The task at `index`, borrowed from `batch`; NULL if out of range or `batch` is NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_batch_get(
    batch: *const X0xTaskBatch,
    index: usize,
) -> *const X0xTask {
    batch_get(batch, index)
}

/// Frees a task batch. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_batch_free(batch: *mut X0xTaskBatch) {
    batch_free(batch)
}

/// Releases the caller's handle; the list keeps syncing while its agent lives. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_task_list_free(list: *mut X0xTaskList) {
    ffi_value((), || {
        if !list.is_null() {
            drop(Box::from_raw(list));
        }
    })
}

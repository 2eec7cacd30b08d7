//! Presence and capability discovery: `x0x_agent_peers`, `x0x_agent_find`,
//! `x0x_agent_advertise`, the builder's capabilities and info, and `X0xAgentInfoList`.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

use super::agent::X0xAgent;
use super::boundary::{
    arg_out, arg_ref, arg_str, batch_free, batch_get, batch_len, ffi_status, to_c_string, Batch,
};
use super::builder::{builder as lock_builder, X0xAgentBuilder};
use super::identity::X0xId;
use super::op::{spawn_op, OpOutput, X0xCallback, X0xOp};
use super::status::X0xStatus;
use crate::error::{Error, Result};
use crate::presence::AgentInfo;

/// One agent as its verified card shows it: a read-only view into its `X0xAgentInfoList`,
/// valid until the list is freed. Copy what you keep.
#[repr(C)]
#[derive(Debug)]
pub struct X0xAgentInfo {
    /// The agent.
    pub agent_id: X0xId,
    /// Its machine (proved by the hello of the connection that brought the card).
    pub machine_id: X0xId,
    /// Where it accepts connections, as `"ip:port"` strings (`address_count` of them).
    pub addresses: *const *const c_char,
    /// The number of `addresses`.
    pub address_count: usize,
    /// What it advertises (`capability_count` NUL-terminated UTF-8 strings).
    pub capabilities: *const *const c_char,
    /// The number of `capabilities`.
    pub capability_count: usize,
    /// Its info map's keys, sorted (`info_count` strings); `info_values[i]` goes with
    /// `info_keys[i]`.
    pub info_keys: *const *const c_char,
    /// Its info map's values.
    pub info_values: *const *const c_char,
    /// The number of info entries.
    pub info_count: usize,
    /// When this agent last received its card, in milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
}

/// A list of agents (`x0x_agent_peers`, `x0x_agent_find`). Opaque; read it with
/// `x0x_agent_info_list_len` and `x0x_agent_info_list_get`, free it with
/// `x0x_agent_info_list_free`.
pub struct X0xAgentInfoList {
    views: Vec<X0xAgentInfo>,
    // The views point into these; their heap data never moves while the list lives.
    _strings: Vec<CString>,
    _arrays: Vec<Vec<*const c_char>>,
}

impl Batch for X0xAgentInfoList {
    type Item = X0xAgentInfo;
    fn items(&self) -> &[X0xAgentInfo] {
        &self.views
    }
}

// SAFETY: the raw pointers in `views` and `_arrays` point into data owned by the same list,
// which is only read after construction.
unsafe impl Send for X0xAgentInfoList {}

impl OpOutput for X0xAgentInfoList {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        Box::into_raw(self).cast()
    }
}

impl X0xAgentInfoList {
    fn new(infos: &[AgentInfo]) -> Self {
        let mut strings = Vec::new();
        let mut arrays: Vec<Vec<*const c_char>> = Vec::new();
        let mut array = |texts: Vec<String>| -> (*const *const c_char, usize) {
            let pointers: Vec<*const c_char> = texts
                .iter()
                .map(|text| {
                    let text = to_c_string(text);
                    let pointer = text.as_ptr();
                    strings.push(text);
                    pointer
                })
                .collect();
            let view = (pointers.as_ptr(), pointers.len());
            arrays.push(pointers);
            view
        };
        let views = infos
            .iter()
            .map(|info| {
                let (addresses, address_count) =
                    array(info.addresses.iter().map(ToString::to_string).collect());
                let (capabilities, capability_count) = array(info.capabilities.clone());
                let (info_keys, info_count) = array(info.info.keys().cloned().collect());
                let (info_values, _) = array(info.info.values().cloned().collect());
                X0xAgentInfo {
                    agent_id: X0xId::from(info.agent_id.0),
                    machine_id: X0xId::from(info.machine_id.0),
                    addresses,
                    address_count,
                    capabilities,
                    capability_count,
                    info_keys,
                    info_values,
                    info_count,
                    last_seen_ms: info.last_seen_ms,
                }
            })
            .collect();
        Self {
            views,
            _strings: strings,
            _arrays: arrays,
        }
    }
}

/// Borrows `count` NUL-terminated UTF-8 strings at `strings`; `(NULL, 0)` is none.
unsafe fn arg_strs(strings: *const *const c_char, count: usize, name: &str) -> Result<Vec<String>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if strings.is_null() {
        return Err(Error::invalid_argument(format!("{name} must not be NULL")));
    }
    if count > isize::MAX as usize / std::mem::size_of::<*const c_char>() {
        return Err(Error::invalid_argument(format!(
            "{name}: count {count} is impossibly large"
        )));
    }
    std::slice::from_raw_parts(strings, count)
        .iter()
        .enumerate()
        .map(|(i, text)| arg_str(*text, &format!("{name}[{i}]")).map(str::to_owned))
        .collect()
}

/// An info map from `count` keys and values.
unsafe fn arg_info(
    keys: *const *const c_char,
    values: *const *const c_char,
    count: usize,
) -> Result<BTreeMap<String, String>> {
    let keys = arg_strs(keys, count, "info_keys")?;
    let values = arg_strs(values, count, "info_values")?;
    Ok(keys.into_iter().zip(values).collect())
}

/// The number of agents in `list` (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_info_list_len(list: *const X0xAgentInfoList) -> usize {
    batch_len(list)
}

/// The agent at `index`, borrowed from `list` (valid until the list is freed); NULL if `list`
/// is NULL or `index` is out of range.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_info_list_get(
    list: *const X0xAgentInfoList,
    index: usize,
) -> *const X0xAgentInfo {
    batch_get(list, index)
}

/// Frees a list and every agent in it. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_info_list_free(list: *mut X0xAgentInfoList) {
    batch_free(list)
}

/// Advertise `capability_count` capabilities (`"summarize"`, `"translate:fr"`: 1 to 128
/// bytes, no spaces; at most 64): other agents find this one by them. Strings are copied.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, over a limit; the message
/// names it).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_capabilities(
    builder: *mut X0xAgentBuilder,
    capabilities: *const *const c_char,
    capability_count: usize,
) -> X0xStatus {
    ffi_status(|| {
        let mut builder = lock_builder(builder)?;
        let capabilities = arg_strs(capabilities, capability_count, "capabilities")?;
        builder.with_capabilities(capabilities)?;
        Ok(())
    })
}

/// The info map this agent's card shows: `count` keys and their values (at most 4 KiB of
/// keys and values together). Strings are copied.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_info(
    builder: *mut X0xAgentBuilder,
    info_keys: *const *const c_char,
    info_values: *const *const c_char,
    info_count: usize,
) -> X0xStatus {
    ffi_status(|| {
        let mut builder = lock_builder(builder)?;
        let info = arg_info(info_keys, info_values, info_count)?;
        builder.with_info(info)?;
        Ok(())
    })
}

/// Advertises `capability_count` capabilities instead of the current ones and, unless
/// `info_keys` is NULL, the info map of `info_count` entries instead of the current one. The
/// directory records follow and peers are shown the new card. Strings are copied.
///
/// Returns `X0X_OK`, `X0X_INVALID_ARGUMENT` or `X0X_CLOSED`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_advertise(
    agent: *const X0xAgent,
    capabilities: *const *const c_char,
    capability_count: usize,
    info_keys: *const *const c_char,
    info_values: *const *const c_char,
    info_count: usize,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?.agent();
        let capabilities = arg_strs(capabilities, capability_count, "capabilities")?;
        let info = if info_keys.is_null() {
            None
        } else {
            Some(arg_info(info_keys, info_values, info_count)?)
        };
        agent.advertise(capabilities, info)
    })
}

/// A snapshot of the agents this agent holds a valid card of (those it has been connected to,
/// and those `x0x_agent_find` found), by agent id, into `*out` (the caller frees it with
/// `x0x_agent_info_list_free`).
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_peers(
    agent: *const X0xAgent,
    out: *mut *mut X0xAgentInfoList,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?.agent();
        let out = arg_out(out, "out")?;
        *out = Box::into_raw(Box::new(X0xAgentInfoList::new(&agent.peers())));
        Ok(())
    })
}

/// Finds agents that advertise `capability`: those known, and when that is fewer than
/// `limit` (0: no limit), those a directory lookup finds, each card fetched over a direct
/// connection. Completes with an `X0xAgentInfoList *` (caller frees it) when `limit` agents
/// are found or `timeout_ms` has passed, with what was found by then (possibly none).
///
/// Fails with `X0X_INVALID_ARGUMENT` (bad capability) or `X0X_NOT_CONNECTED` (not joined).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_find(
    agent: *const X0xAgent,
    capability: *const c_char,
    timeout_ms: u32,
    limit: usize,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let agent = Arc::clone(arg_ref(agent, "agent")?.shared());
        let capability = arg_str(capability, "capability")?.to_owned();
        crate::presence::check_capability(&capability)?;
        let limit = (limit > 0).then_some(limit);
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        spawn_op(callback, user_data, op_out, async move {
            let found = agent.find(&capability, timeout, limit).await?;
            Ok(X0xAgentInfoList::new(&found))
        });
        Ok(())
    })
}

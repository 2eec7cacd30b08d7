"""Task lists: a CRDT replicated between agents (tasks go Empty → Claimed → Done)."""

import enum
from typing import Any, List, NamedTuple, Optional, Union

from ._ffi import c_str, check, ffi, lib, take_bytes
from ._handle import NativeHandle
from .ids import AgentId, TaskId, TaskListId

__all__ = ["TaskItem", "TaskList", "TaskStatus"]


class TaskStatus(enum.Enum):
    """A task's checkbox."""

    Empty = lib.X0X_TASK_EMPTY
    """Nobody has claimed it."""
    Claimed = lib.X0X_TASK_CLAIMED
    """Claimed by its assignee."""
    Done = lib.X0X_TASK_DONE
    """Completed by its assignee."""


class TaskItem(NamedTuple):
    """A task as it is on this replica at the moment ``get_tasks()`` was called."""

    id: TaskId
    """The task's id."""
    title: str
    """Its title, as given to ``add_task``."""
    description: str
    """Its description ("" if none was given)."""
    status: TaskStatus
    """Empty, Claimed or Done."""
    assignee: Optional[AgentId]
    """Who claimed or completed it (``None`` while Empty)."""
    updated_at: int
    """Latest change, milliseconds since the Unix epoch."""
    created_at: int
    """Creation time, milliseconds since the Unix epoch."""


def _task_id(task_id: Union[TaskId, str]) -> Any:
    return (TaskId.from_hex(task_id) if isinstance(task_id, str) else task_id)._cdata()


class TaskList(NativeHandle):
    """A replica of a task list.

    Changes apply to this replica at once and reach the other replicas in the background; all
    replicas that have seen the same changes hold the same list. Rules, the same everywhere:
    Done beats Claimed beats Empty; of two claims the earlier wins (ties: the lower agent id),
    so a claim never takes a task from someone who claimed it first; completing an unclaimed
    task is allowed; a task removed on one replica while re-added on another stays.
    """

    __slots__ = ("_id",)
    _free = lib.x0x_task_list_free

    def __init__(self, ptr: object) -> None:
        """Wraps an ``X0xTaskList *``; use ``Agent.create_task_list`` and friends instead."""
        super().__init__(ptr)
        out = ffi.new("X0xId *")
        check(lib.x0x_task_list_id(self._ptr, out))
        self._id = TaskListId(ffi.buffer(out.bytes))

    @classmethod
    async def create(cls, name: str) -> "TaskList":
        """A list that lives only in this process and syncs with nobody.

        To share a list, use ``Agent.create_task_list`` instead.
        """
        out = ffi.new("X0xTaskList **")
        check(lib.x0x_task_list_new_local(c_str(name, "name"), out))
        return cls(out[0])

    @property
    def id(self) -> TaskListId:
        """The list's id: other agents ``join_task_list`` it."""
        return self._id

    @property
    def name(self) -> str:
        """The list's name ("" on a joined replica until another replica has answered)."""
        handle = self._handle()
        return take_bytes(lambda out: lib.x0x_task_list_name(handle, out)).decode("utf-8")

    async def add_task(self, title: str, description: Optional[str] = "") -> TaskId:
        """Add a task; returns its id. ``None`` is an empty description."""
        out = ffi.new("X0xId *")
        text = c_str("" if description is None else description, "description")
        check(lib.x0x_task_list_add_task(self._handle(), c_str(title, "title"), text, out))
        return TaskId(ffi.buffer(out.bytes))

    async def claim_task(
        self, task_id: Union[TaskId, str], agent_id: Optional[AgentId] = None
    ) -> None:
        """Claim a task for ``agent_id`` (default: this agent).

        Raises ``NotFoundError`` (a ``KeyError``) for an unknown task. If someone claimed it
        earlier, their claim stays the winner on every replica: check ``get_tasks()``.
        """
        agent = ffi.NULL if agent_id is None else agent_id._cdata()
        check(lib.x0x_task_list_claim_task(self._handle(), _task_id(task_id), agent))

    async def complete_task(self, task_id: Union[TaskId, str]) -> None:
        """Mark a task done by this agent (completing an unclaimed task is allowed)."""
        check(lib.x0x_task_list_complete_task(self._handle(), _task_id(task_id)))

    async def remove_task(self, task_id: Union[TaskId, str]) -> None:
        """Remove a task from the list."""
        check(lib.x0x_task_list_remove_task(self._handle(), _task_id(task_id)))

    def get_tasks(self) -> List[TaskItem]:
        """The tasks now, oldest first (the same order on every replica)."""
        out = ffi.new("X0xTaskBatch **")
        check(lib.x0x_task_list_tasks(self._handle(), out))
        batch = out[0]
        try:
            items = []
            for i in range(lib.x0x_task_batch_len(batch)):
                task = lib.x0x_task_batch_get(batch, i)
                items.append(
                    TaskItem(
                        id=TaskId(ffi.buffer(task.id.bytes)),
                        title=ffi.string(task.title).decode("utf-8"),
                        description=ffi.string(task.description).decode("utf-8"),
                        status=TaskStatus(task.status),
                        assignee=AgentId(ffi.buffer(task.assignee.bytes))
                        if task.has_assignee
                        else None,
                        updated_at=int(task.updated_ms),
                        created_at=int(task.created_ms),
                    )
                )
            return items
        finally:
            lib.x0x_task_batch_free(batch)

    def close(self) -> None:
        """Release this handle (the agent keeps the list and keeps syncing it)."""
        self._release()

    def __repr__(self) -> str:
        return f"<TaskList {self._id.to_hex()[:16]}…>"

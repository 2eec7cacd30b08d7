"""A task-list replica in its own process, driven line by line over stdin/stdout.

    python tasklist_peer.py BOOTSTRAP LIST_ID [DATA_DIR]

Built as the README shows (plus ``with_data_dir(DATA_DIR)`` when given). Prints ``ready <agent
id>`` once it holds a task, then answers ``claim`` (claims the first task), ``report`` (prints
the tasks as JSON) and ``quit``.
"""

import asyncio
import json
import sys
from typing import Optional

import x0x


async def main(bootstrap: str, list_id: str, data_dir: Optional[str]) -> None:
    builder = x0x.Agent.builder().with_bootstrap(bootstrap)
    if data_dir:
        builder.with_data_dir(data_dir)
    async with await builder.build() as agent:
        await agent.join_network()
        tasks = await agent.join_task_list(list_id)
        while not tasks.get_tasks():
            await asyncio.sleep(0.01)
        print("ready", agent.agent_id.to_hex(), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "claim":
                await tasks.claim_task(tasks.get_tasks()[0].id)
                print("claimed", flush=True)
            elif command == "report":
                report = [
                    {
                        "id": t.id.to_hex(),
                        "status": t.status.name,
                        "assignee": t.assignee.to_hex() if t.assignee else None,
                    }
                    for t in tasks.get_tasks()
                ]
                print(json.dumps(report), flush=True)
            else:
                return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))

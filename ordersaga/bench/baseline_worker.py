"""The baseline's worker, a process of its own like the saga's worker, so both
are measured the same way (`python -m ordersaga.bench.baseline_worker ADDRESS`)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from ordersaga.bench.baseline import (
    ACTIVITY_QUEUE,
    WORKFLOW_QUEUE,
    BaselineWorkflow,
    LocalActivityBaselineWorkflow,
    noop,
)
from ordersaga.runtime import eventloop


async def serve(address: str, namespace: str, max_concurrent: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = await Client.connect(address, namespace=namespace)
    workflows = Worker(
        client,
        task_queue=WORKFLOW_QUEUE,
        workflows=[BaselineWorkflow, LocalActivityBaselineWorkflow],
        activities=[noop],
        max_concurrent_workflow_tasks=max_concurrent,
        max_concurrent_activities=max_concurrent,
    )
    activities = Worker(
        client,
        task_queue=ACTIVITY_QUEUE,
        activities=[noop],
        max_concurrent_activities=max_concurrent,
    )
    async with workflows, activities:
        print(f"baseline worker polling {WORKFLOW_QUEUE}, {ACTIVITY_QUEUE}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="ordersaga.bench.baseline_worker")
    parser.add_argument("address")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--max-concurrent", type=int, default=100)
    args = parser.parse_args()
    # The same loop as the saga's worker (ordersaga.cli worker): the comparison
    # is of the workflows, not of the event loops.
    eventloop.run(serve(args.address, args.namespace, args.max_concurrent))


if __name__ == "__main__":
    main()

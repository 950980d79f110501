"""``lambdaflow events failed``: the events that failed for good, and their redrive.

    lambdaflow events failed --queue Q [--redrive (--to-queue SRC | --function F)]
                             [--region R] [--endpoint-url URL]

``Q`` is the failure queue (a name or URL): the upload function's on-failure destination
on AWS, the notification queue's dead-letter queue locally. One line per event: the S3
objects, the error, the attempts. ``--redrive`` sends each back (see
:mod:`lambdaflow.events_failed`) and deletes it from ``Q`` once that succeeded; the exit
code is 1 when some event could not be redriven.
"""

from __future__ import annotations

import argparse

from lambdaflow.deploy.clients import AwsClients
from lambdaflow.events_failed import list_failed, redrive


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "events", help="event-driven apps: failed events",
        description="Inspect the events of an upload app that failed for good.")  # fmt: skip
    sub = p.add_subparsers(dest="events_command", metavar="SUBCOMMAND", required=True)
    f = sub.add_parser("failed", help="list failed events with their errors; redrive them")
    f.add_argument("--queue", required=True, help="the failure queue (name or URL)")
    f.add_argument("--redrive", action="store_true", help="send every failed event back")
    f.add_argument("--to-queue", help="redrive dead-lettered notifications to this queue")
    f.add_argument("--function", help="redrive destination records by invoking this function")
    f.add_argument("--region", help="AWS region (default: $LAMBDAFLOW_REGION, the profile's)")
    f.add_argument("--endpoint-url", help="endpoint of every AWS service (tests: moto)")
    f.set_defaults(func=run_failed)


def _url(clients: AwsClients, queue: str | None) -> str | None:
    if not queue or queue.startswith(("http://", "https://")):
        return queue
    return str(clients.sqs.get_queue_url(QueueName=queue)["QueueUrl"])


def run_failed(args: argparse.Namespace) -> int:
    clients = AwsClients.create(region=args.region, endpoint_url=args.endpoint_url)
    queue = _url(clients, args.queue)
    assert queue is not None
    if not args.redrive:
        failed = list_failed(clients.sqs, queue)
        for event in failed:
            print(f"{event.kind:<11} {event.line()}")
        print(f"{len(failed)} failed event(s) in {args.queue}")
        return 0
    done, refused = redrive(clients.sqs, queue, source_queue_url=_url(clients, args.to_queue),
                            lambda_client=clients.lambda_, function_name=args.function)
    for event in done:
        print(f"redriven   {', '.join(event.objects) or event.message_id}")
    for event, why in refused:
        print(f"kept       {', '.join(event.objects) or event.message_id}: {why}")
    print(f"{len(done)} redriven, {len(refused)} kept in {args.queue}")
    return 1 if refused else 0

#!/usr/bin/env python3
"""A bot that hands its user over to a human agent through `handover serve`.

Standard library only. Start the service with `handover serve --demo`, then:

    HANDOVER_URL=http://127.0.0.1:8080 HANDOVER_API_KEY=<the key it printed> python3 bot.py

It starts a handover, prints the agent's messages as they come over SSE (resuming with
Last-Event-ID if the stream drops), answers them, and exits with the final status:
0 for completed, 1 otherwise.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ.get("HANDOVER_URL", "http://127.0.0.1:8080").rstrip("/")
KEY = os.environ.get("HANDOVER_API_KEY", "")
PROVIDER = os.environ.get("HANDOVER_PROVIDER", "miaw")
# What the user says after each agent message; the last one ends the chat.
ANSWERS = ["I was charged twice for my subscription.", "Thanks, that's all. bye"]


def call(method, path, body=None):
    """One API call: the decoded JSON answer, or an error naming the status and the code."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + KEY)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}").get("error", {})
        raise SystemExit(f"{method} {path}: {error.code} {detail.get('code')}: {detail.get('message')}")


def events(handover_id):
    """Yields the handover's events over SSE, resuming after the last one on a drop."""
    last = None
    while True:
        request = urllib.request.Request(f"{BASE}/v1/handovers/{handover_id}/events")
        request.add_header("Authorization", "Bearer " + KEY)
        request.add_header("Accept", "text/event-stream")
        if last is not None:
            request.add_header("Last-Event-ID", str(last))
        try:
            with urllib.request.urlopen(request, timeout=60) as stream:
                data = []
                for raw in stream:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("data: "):
                        data.append(line[6:])
                    elif line == "" and data:
                        event = json.loads("\n".join(data))
                        data = []
                        last = event["seq"]
                        yield event
                        if event["type"] == "status":
                            return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            print(f"(the event stream dropped: {error}; resuming after {last})", file=sys.stderr)
            time.sleep(1)


def main():
    if not KEY:
        raise SystemExit("set HANDOVER_API_KEY to the key `handover serve --demo` printed")
    created = call("POST", "/v1/handovers", {
        "provider": PROVIDER,
        "user": {"id": "user-42", "name": "Jane Doe", "email": "jane@example.com"},
        "transcript": [
            {"from": "user", "text": "My invoice looks wrong."},
            {"from": "bot", "text": "Let me get you a human."},
        ],
    })
    handover_id = created["id"]
    print(f"handover {handover_id}: {created['state']}")
    answers = iter(ANSWERS)
    status = None
    for event in events(handover_id):
        kind = event["type"]
        if kind == "say":
            print(f"bot:   {event['text']}")
        elif kind == "queue_update":
            print(f"queue: position {event.get('position')}, wait {event.get('estimated_wait_time_ms')} ms")
        elif kind == "agent_joined":
            print(f"       {event['agent']} joined")
        elif kind == "agent_message":
            print(f"agent: {event['text']}")
            answer = next(answers, None)
            if answer is not None:
                print(f"user:  {answer}")
                call("POST", f"/v1/handovers/{handover_id}/inputs",
                     {"type": "message", "text": answer, "id": f"answer-{event['seq']}"})
        elif kind == "status":
            status = event["status"]
    final = call("GET", f"/v1/handovers/{handover_id}")
    print(f"final status: {final['status']['status']}")
    return 0 if status == "completed" and final["state"] == "ended" else 1


if __name__ == "__main__":
    sys.exit(main())

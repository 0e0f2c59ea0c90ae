"""Writes contracts/schemas/: a JSON Schema per message and an AsyncAPI 3 document of the topics.

Run `python -m mfaplane_contracts.generate [DIR]`; a test fails when the committed files differ.
An event's schema file (`events/<type>.v<version>.json`) is its published contract: consumers that
are not upgraded yet read events by it, and stored events keep it forever. So each one's digest is
recorded in `published-events.sha256` when it is first written, a list that only grows: changing
an event's fields without raising its `schema_version` (and adding the upcaster from the version
before, registry.py) stops the generation here, even if its file was deleted first, and a test
fails when a recorded file is missing or differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from mfaplane_contracts.commands import COMMANDS
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_contracts.topics import ALL_TOPICS, EVENT_TOPICS

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_files() -> dict[str, Any]:
    files: dict[str, Any] = {"Envelope.json": Envelope.model_json_schema()}
    for name, model in sorted(EVENT_TYPES.items()):
        files[f"events/{name}.v{model.schema_version}.json"] = model.model_json_schema()
    for command in COMMANDS:
        files[f"commands/{command.command_type}.json"] = command.model_json_schema()
    files["asyncapi.json"] = asyncapi()
    return files


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        key = topic.name.replace(".", "_").replace("-", "_")
        messages = {
            name: {"$ref": f"#/components/messages/{name}"}
            for name, model in sorted(EVENT_TYPES.items())
            if model.topic == topic.name
        }
        channels[key] = {
            "address": topic.name,
            "description": topic.description,
            "messages": messages or {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": {
                "kafka": {
                    "partitions": topic.partitions,
                    "topicConfiguration": {"retention.ms": topic.retention_ms},
                }
            },
        }
        operations[f"publish_{key}"] = {"action": "send", "channel": {"$ref": f"#/channels/{key}"}}
    components = {
        name: {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"events/{name}.v{model.schema_version}.json"},
            "headers": {"$ref": "Envelope.json"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "aggregate id"}}},
        }
        for name, model in sorted(EVENT_TYPES.items())
    }
    components["DeadLetter"] = {
        "name": "DeadLetter",
        "contentType": "application/json",
        "payload": {"type": "object", "description": "the original message with the error that parked it"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "mfaplane events",
            "version": "1.0.0",
            "description": "Every message is an Envelope (JSON) whose payload is the named event. "
            f"Event topics: {', '.join(t.name for t in EVENT_TOPICS)}.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": components},
    }


def render(content: Any) -> str:
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


PUBLISHED = "published-events.sha256"  # `<sha256>  events/<type>.v<version>.json` per line, as sha256sum


class PublishedSchemaChanged(Exception):
    pass


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def published(directory: Path) -> dict[str, str]:
    """Each published event schema file (relative to `directory`) with its recorded digest."""
    path = directory / PUBLISHED
    lines = path.read_text().splitlines() if path.exists() else []
    return {name: recorded for recorded, name in (line.split("  ", 1) for line in lines if line)}


def changed_published(directory: Path) -> list[str]:
    """The published event schemas that the code would now write differently."""
    recorded = published(directory)
    return [relative for relative, content in schema_files().items()
            if relative in recorded and recorded[relative] != digest(render(content))]


def write(directory: Path) -> None:
    changed = changed_published(directory)
    if changed:
        raise PublishedSchemaChanged(f"published event schemas changed: {', '.join(changed)}; raise the event's "
                                     "schema_version and add an upcaster from the version before (registry.py)")
    recorded = published(directory)
    for older in sorted((directory / "events").glob("*.json")):  # older versions, no longer generated
        recorded.setdefault(str(older.relative_to(directory)), digest(older.read_text()))
    for relative, content in schema_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(content))
        if relative.startswith("events/"):
            recorded.setdefault(relative, digest(render(content)))
    (directory / PUBLISHED).write_text("".join(f"{recorded[name]}  {name}\n" for name in sorted(recorded)))


if __name__ == "__main__":
    try:
        write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    except PublishedSchemaChanged as refusal:
        sys.exit(str(refusal))

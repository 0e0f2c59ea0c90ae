"""Writes contracts/schemas/: a JSON Schema per message and an AsyncAPI 3 document of the topics.

Run `python -m mfaplane_contracts.generate [DIR]`; a test fails when the committed files differ.
An event's schema file (`events/<type>.v<version>.json`) is its published contract: consumers that
are not upgraded yet read events by it, and stored events keep it forever. So it is never rewritten
and never removed: changing an event's fields without raising its `schema_version` (and adding
the upcaster from the version before, registry.py) stops the generation here.
"""

from __future__ import annotations

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


class PublishedSchemaChanged(Exception):
    pass


def changed_published(directory: Path) -> list[str]:
    """The event schema files in `directory` that the code would now write differently."""
    return [relative for relative, content in schema_files().items()
            if relative.startswith("events/") and (directory / relative).exists()
            and (directory / relative).read_text() != render(content)]


def write(directory: Path) -> None:
    changed = changed_published(directory)
    if changed:
        raise PublishedSchemaChanged(f"published event schemas changed: {', '.join(changed)}; raise the event's "
                                     "schema_version and add an upcaster from the version before (registry.py)")
    for relative, content in schema_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(content))


if __name__ == "__main__":
    try:
        write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    except PublishedSchemaChanged as refusal:
        sys.exit(str(refusal))

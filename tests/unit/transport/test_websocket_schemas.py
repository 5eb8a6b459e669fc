"""The envelope check every frame passes agrees with the JSON Schema documents it stands for."""

from __future__ import annotations

import random

import jsonschema
import pytest

from zaqar.transport.websocket import schemas

# Values of every JSON type, including the ones JSON Schema treats specially (5.0 is an integer,
# booleans are not numbers).
VALUES = ["text", "", 0, 7, -3, 5.0, 2.5, True, False, None, [], ["a"], {}, {"k": 1}]
HEADERS = {"Client-ID": "c", "X-Project-ID": "p", "X-Auth-Token": "t", "User-Agent": "u", "Accept": "a"}


def _envelopes(action: str, rng: random.Random, count: int):
    required, optional = schemas._BODIES.get(action, ((), ()))
    fields = list(required + optional) + ["extra", "metadata"]
    for _ in range(count):
        doc: dict = {"action": action}
        if rng.random() < 0.95:
            headers = {k: v for k, v in HEADERS.items() if rng.random() < 0.85}
            if rng.random() < 0.2:
                headers[rng.choice(list(HEADERS))] = rng.choice(VALUES)
            doc["headers"] = headers if rng.random() < 0.97 else rng.choice(VALUES)
        roll = rng.random()
        if roll < 0.9:
            doc["body"] = {name: rng.choice(VALUES) if rng.random() < 0.3 else _typed(name)
                           for name in fields if rng.random() < 0.8}
        elif roll < 0.95:
            doc["body"] = rng.choice(VALUES)
        yield doc


def _typed(name: str):
    kind = schemas._TYPES.get(name, "string")
    return {"string": "s", "integer": 3, "boolean": True, "array": [], "object": {}}[kind]


@pytest.mark.parametrize("action", sorted(schemas.ACTIONS))
def test_valid_agrees_with_the_json_schema_of_every_action(action):
    validator = jsonschema.Draft7Validator(schemas.envelope_schema(action))
    rng = random.Random(action)
    checked = accepted = 0
    for doc in _envelopes(action, rng, 400):
        expected = validator.is_valid({**doc, "body": doc.get("body", {})})
        assert schemas.valid(action, doc) is expected, doc
        checked += 1
        accepted += expected
    assert 0 < accepted < checked  # both outcomes were exercised

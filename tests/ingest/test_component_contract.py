"""Every Haystack component in ingest/components keeps the same contract (STYLE.md §2)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from haystack import component
from haystack.core.serialization import component_from_dict, component_to_dict

import ingest.components
from kms.services import Services


def all_components() -> list[type[Any]]:
    found = []
    for info in pkgutil.iter_modules(ingest.components.__path__):
        module = importlib.import_module(f"ingest.components.{info.name}")
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and cls in component.registry.values():
                found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def build(cls: type[Any], services: Services) -> Any:
    """Components that hold live connections get the real ones from a fresh data dir."""
    if cls.__name__ == "ChunkWriter":
        return cls(store=services.store, sessions=services.sessions, classification=services.classification)
    return cls()


def test_every_component_module_is_found() -> None:
    names = {cls.__name__ for cls in all_components()}
    assert {
        "FileConverter",
        "TextCleaner",
        "MetadataExtractor",
        "LegalSplitter",
        "ChunkEmbedder",
        "ChunkWriter",
    } <= names


@pytest.mark.parametrize("cls", all_components(), ids=lambda c: c.__name__)
def test_component_returns_its_declared_keys_on_empty_input(cls: type[Any], services: Services) -> None:
    instance = build(cls, services)
    inputs = {
        name: [] for name, socket in instance.__haystack_input__._sockets_dict.items() if socket.is_mandatory
    }
    outputs = instance.run(**inputs)
    assert set(outputs) == set(instance.__haystack_output__._sockets_dict), cls.__name__


@pytest.mark.parametrize("cls", all_components(), ids=lambda c: c.__name__)
def test_component_serialises(cls: type[Any], services: Services) -> None:
    instance = build(cls, services)
    data = component_to_dict(instance, cls.__name__)
    assert data["type"].endswith(cls.__name__)
    if cls.__name__ == "ChunkWriter":  # holds live connections: serialises its kind only, by design
        assert data["init_parameters"] == {"collection": None}
        return
    restored = component_from_dict(cls, data, cls.__name__)
    assert component_to_dict(restored, cls.__name__) == data

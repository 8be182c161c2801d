"""The MCP tools as plain functions, and their output models against the records they restate.

The tools are called here without any client or transport: a tool is a
coroutine function of the AsyncMemorySystem and the model's arguments. The end-to-end
behaviour (schemas, eras, stdio, HTTP) is in test_mcp_stdio.py and
test_mcp_http.py.
"""

from __future__ import annotations

import asyncio
import inspect
import types
import typing
from typing import Any, Literal, Union

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from actors import AsyncMemorySystem, MemorySystem
from actors.model import (
    CountResult,
    ForgetResult,
    Memory,
    MemoryPage,
    RecallHit,
    RecallResult,
    StoreReceipt,
)
from actors.server import (
    TOOLS,
    CountOutput,
    ForgetOutput,
    ListOutput,
    MemoryOutput,
    RecallHitOutput,
    RecallOutput,
    StoreOutput,
    memory_count,
    memory_forget,
    memory_get,
    memory_list,
    memory_recall,
    memory_retag,
    memory_store,
)

#: Each output model and the record of actors.model whose to_dict() it describes.
RECORDS: dict[type[BaseModel], type] = {
    StoreOutput: StoreReceipt,
    RecallHitOutput: RecallHit,
    RecallOutput: RecallResult,
    MemoryOutput: Memory,
    ForgetOutput: ForgetResult,
    ListOutput: MemoryPage,
    CountOutput: CountResult,
}


def _text(result: CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def _output_model(tool: Any) -> type[BaseModel]:
    """The model a tool's return annotation advertises as its outputSchema."""
    returned = typing.get_type_hints(tool, include_extras=True)["return"]
    model: type[BaseModel] = returned.__metadata__[0]
    return model


def _shape(tp: Any) -> Any:
    """A type in a form that compares equal across attrs records and pydantic models.

    Tuples of the records are lists on the wire; an output model stands for
    its record; a Literal compares by its values, a union by its members.
    """
    if tp in RECORDS:
        return RECORDS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return ("sequence", _shape(args[0]))
    if origin is list:
        return ("sequence", _shape(args[0]))
    if origin is dict:
        return ("dict", _shape(args[0]), _shape(args[1]))
    if origin in (Union, types.UnionType):
        return ("union", frozenset(_shape(arg) for arg in args))
    if origin is Literal:
        return ("literal", frozenset(args))
    assert origin is None, f"no shape for {tp!r}"
    return tp


@pytest.mark.parametrize("output", list(RECORDS), ids=lambda model: model.__name__)
def test_each_output_model_matches_its_record_field_for_field(output: type[BaseModel]) -> None:
    """Same field names, same types (tuple ↔ list), same nullability: one description."""
    record = RECORDS[output]
    record_fields = {name: _shape(tp) for name, tp in typing.get_type_hints(record).items()}
    output_fields = {name: _shape(field.annotation) for name, field in output.model_fields.items()}
    assert output_fields == record_fields


def test_the_shapes_tell_a_changed_field_apart() -> None:
    """The comparison is not vacuous: nullability, literal values and records all count."""
    assert _shape(str | None) != _shape(str)
    assert _shape(Literal["a", "b"]) != _shape(Literal["a"])
    assert _shape(tuple[Memory, ...]) == _shape(list[MemoryOutput])
    assert _shape(tuple[Memory, ...]) != _shape(list[RecallHitOutput])


def test_a_tool_called_directly_stores_and_answers_text_and_structured_content(
    system: MemorySystem,
) -> None:
    """memory_store is a coroutine of the facade and the arguments; its answer is the receipt."""
    result = asyncio.run(
        memory_store(AsyncMemorySystem(system), "  The user prefers tabs.\r\n", tags=["Style"])
    )
    receipt = StoreOutput.model_validate(result.structured_content)
    assert _text(result) == (
        f"Stored {receipt.id} (new) in namespace default with tags style; committed."
    )
    assert (receipt.duplicate, receipt.tags, receipt.sync_state) == (False, ["style"], "committed")
    assert system.get(receipt.id).content == "The user prefers tabs."


def test_recall_called_directly_reports_progress_through_the_injected_reporter(
    system: MemorySystem,
) -> None:
    """Progress goes to whatever reporter the caller passes: 0 at the start, 1 with the status."""
    memory = AsyncMemorySystem(system)
    seen: list[tuple[float, str]] = []

    async def report(done: float, message: str) -> None:
        seen.append((done, message))

    async def main() -> tuple[dict[str, Any] | None, CallToolResult]:
        stored = (await memory_store(memory, "Deploys happen on Tuesdays.")).structured_content
        return stored, await memory_recall(memory, report, "deploys")

    stored, result = asyncio.run(main())
    assert stored is not None
    assert seen == [(0, "searching local memories and the hub"), (1, "local: 1 match(es)")]
    found = RecallOutput.model_validate(result.structured_content)
    assert [hit.id for hit in found.hits] == [stored["id"]]
    assert (
        _text(result).splitlines()[1]
        == f"1. {stored['id']} [default] [Deploys] happen on Tuesdays."
    )


def test_a_facade_error_becomes_a_tool_error_named_after_its_class(system: MemorySystem) -> None:
    """Our errors reach the model with their class name; nothing is stored."""
    memory = AsyncMemorySystem(system)
    with pytest.raises(ToolError, match=r"^InvalidMemory: 'nope' is not a memory id \(a UUID\)$"):
        asyncio.run(memory_get(memory, "nope"))
    with pytest.raises(ToolError, match=r"^InvalidMemory: content is empty"):
        asyncio.run(memory_store(memory, "   "))
    assert system.count().total == 0


def test_every_tool_answers_structured_content_its_output_model_accepts(
    system: MemorySystem,
) -> None:
    """Each tool's structuredContent has exactly its model's fields and validates against it."""
    memory_id = system.store("a fact to page through").id
    memory = AsyncMemorySystem(system)

    async def quiet(done: float, message: str) -> None:
        pass

    async def main() -> dict[Any, CallToolResult]:
        return {
            memory_store: await memory_store(memory, "a fact to page through", tags=["x"]),
            memory_recall: await memory_recall(memory, quiet, "fact"),
            memory_get: await memory_get(memory, memory_id),
            memory_list: await memory_list(memory, limit=1),
            memory_count: await memory_count(memory),
            memory_retag: await memory_retag(memory, ["y"], memory_id),
            memory_forget: await memory_forget(memory, memory_id),
        }

    answers = asyncio.run(main())
    assert set(answers) == {tool for tool, _ in TOOLS}
    for tool, result in answers.items():
        model = _output_model(tool)
        assert result.structured_content is not None
        assert set(result.structured_content) == set(model.model_fields), tool.__name__
        model.model_validate(result.structured_content)


def test_the_tools_are_coroutines_on_the_loop_and_concurrent_calls_share_group_commits(
    system: MemorySystem,
) -> None:
    """No thread hop per call: 32 concurrent memory_store calls on one loop, one file."""
    memory = AsyncMemorySystem(system)

    async def main() -> list[CallToolResult]:
        return await asyncio.gather(*(memory_store(memory, f"fact {n}") for n in range(32)))

    assert all(inspect.iscoroutinefunction(tool) for tool, _ in TOOLS)
    results = asyncio.run(main())
    assert len({(r.structured_content or {})["id"] for r in results}) == 32
    assert system.count().total == 32

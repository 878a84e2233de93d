"""Sans-I/O programs: the gap repair and the mirror are written once, as generators that yield
the RPC calls they need (`(method, params)`) and receive each call's result (or have its error
thrown in). `run` drives one with the blocking client, `run_async` with the asyncio one."""

from typing import Any, Awaitable, Callable, Generator, TypeVar

from .errors import ZcoordError

T = TypeVar("T")
Effect = tuple[str, dict[str, Any]]
Program = Generator[Effect, Any, T]


def run(program: "Program[T]", call: Callable[[str, dict[str, Any]], Any]) -> T:
    """Runs `program`, making each call it asks for with `call`."""
    try:
        effect = next(program)
        while True:
            try:
                result = call(*effect)
            except ZcoordError as e:
                effect = program.throw(e)
            else:
                effect = program.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(
    program: "Program[T]", call: Callable[[str, dict[str, Any]], Awaitable[Any]]
) -> T:
    """As `run`, awaiting each call."""
    try:
        effect = next(program)
        while True:
            try:
                result = await call(*effect)
            except ZcoordError as e:
                effect = program.throw(e)
            else:
                effect = program.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]

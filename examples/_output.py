"""Where the examples write their pictures: examples/output/ (created on demand)."""

import pathlib

OUTPUT = pathlib.Path(__file__).resolve().parent / "output"


def picture(name: str) -> pathlib.Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT / name

"""Where the examples write their pictures: the current directory, where you ran them."""

import pathlib


def picture(name: str) -> pathlib.Path:
    return pathlib.Path.cwd() / name

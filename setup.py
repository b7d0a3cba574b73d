"""Maps the user's top-level layout onto the `voxframe` package.

pipeline/, processors/, transports/, fakes/ and runner/ sit at the top of the repository (the layout the
user asked for) and install as `voxframe.pipeline`, `voxframe.processors`, ... Every folder
with an `__init__.py` below them is a subpackage, found here so none is forgotten.
"""

from pathlib import Path

from setuptools import setup

ROOTS = ("pipeline", "processors", "transports", "fakes", "runner")
HERE = Path(__file__).parent

packages = sorted(
    "voxframe." + ".".join(init.parent.relative_to(HERE).parts)
    for root in ROOTS
    for init in (HERE / root).rglob("__init__.py")
)
setup(
    packages=packages,
    package_dir={f"voxframe.{root}": root for root in ROOTS},
    # The browser client is served from the installed package: `static` is a package of its own
    # (an `__init__.py`), so setuptools installs its page files as that package's data.
    # py.typed in each top package: voxframe is a namespace, so PEP 561 marks its parts one by one.
    package_data={
        "voxframe.transports.webrtc.static": ["*.html", "*.js"],
        # Smart Turn v3.2 (sha256-pinned in processors/models.py) and its BSD-2-Clause licence.
        "voxframe.processors.turns.data": ["*.onnx", "LICENSE"],
        "voxframe.transports.websocket.static": ["*.html", "*.js"],
        **{f"voxframe.{root}": ["py.typed"] for root in ROOTS},
    },
)

"""Generates the gRPC stubs from the repository's proto/ before the package is built.

The stubs land in src/sluice/v1/ (and src/sluice/node/ is not needed: clients speak sluice.v1
only). SLUICE_PROTO_DIR overrides where the .proto files are read from.
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
PROTO_DIR = Path(os.environ.get("SLUICE_PROTO_DIR", HERE.parent.parent / "proto"))
OUT_DIR = HERE / "src"
PROTOS = ["sluice/v1/record.proto", "sluice/v1/data.proto", "sluice/v1/admin.proto"]


def generate_stubs() -> None:
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    for proto in PROTOS:
        if not (PROTO_DIR / proto).is_file():
            raise RuntimeError(f"{PROTO_DIR / proto} not found; set SLUICE_PROTO_DIR to the repository's proto/")
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(PROTOS))
    (OUT_DIR / "sluice" / "v1" / "__init__.py").touch()


# Generated before setup() runs: setuptools checks every listed package's directory up front.
generate_stubs()

# Listed, not discovered: sluice.v1 is generated, not committed.
setup(
    packages=["sluice", "sluice.v1"],
    package_dir={"": "src"},
    package_data={"sluice.v1": ["*.pyi"]},
)

"""protoc from the grpcio-tools package, with protobuf's well-known types on the include path.

`python -m grpc_tools.protoc` adds that include itself only when run as __main__; a Bazel
py_binary runs this file instead, so it adds it here.
"""

import importlib.resources
import sys

from grpc_tools import protoc

if __name__ == "__main__":
    include = importlib.resources.files("grpc_tools") / "_proto"
    sys.exit(protoc.main(["protoc", *sys.argv[1:], f"-I{include}"]))

"""Regenerate the Python code of the `tallyport.v1` contract from its .proto files.

python protos/generate.py           # rewrite protos/tallyport/v1/*_pb2*.py(i)
python protos/generate.py --check   # exit 1 if the committed code is stale (CI)
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTOS_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = PROTOS_DIR / "tallyport" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_dir: Path) -> None:
    proto_files = sorted(str(p.relative_to(PROTOS_DIR)) for p in PACKAGE_DIR.glob("*.proto"))
    include_dir = str(Path(protoc.__file__).parent / "_proto")
    bin_dir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside the interpreter
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS_DIR}",
        f"-I{include_dir}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *proto_files,
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def generated_files(root: Path) -> list[Path]:
    return sorted(
        p.relative_to(root) for p in (root / "tallyport" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed generated code is stale")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        (tmp_root / "tallyport" / "v1").mkdir(parents=True)
        generate(tmp_root)
        fresh = generated_files(tmp_root)
        if options.check:
            current = generated_files(PROTOS_DIR)
            stale = [
                str(p)
                for p in fresh
                if not (PROTOS_DIR / p).exists() or not filecmp.cmp(tmp_root / p, PROTOS_DIR / p, shallow=False)
            ]
            stale += [str(p) for p in current if p not in fresh]
            if stale:
                print("generated protobuf code is stale; run: python protos/generate.py")
                for path in stale:
                    print(f"  {path}")
                return 1
            print(f"generated protobuf code is fresh ({len(fresh)} files)")
            return 0
        for old in generated_files(PROTOS_DIR):
            (PROTOS_DIR / old).unlink()
        for new in fresh:
            shutil.copyfile(tmp_root / new, PROTOS_DIR / new)
        print(f"wrote {len(fresh)} files under {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The models the workshop needs, checked against the shared filesystem.

The list (models.json, written by scripts/worker-models.ts from config/models.yml and, for sizes,
the vault's models-manifest.json) is baked into the image; a mounted file can replace it
(MODELS_LIST). It is read as untrusted input: every entry is validated and an error names the
file, the entry, the value and what is expected.

As a command (the entrypoint's start-up check), it prints one tab-separated line per model that is
not right, then a summary, and exits 0 (all present with the right size), 1 (some are not) or 2
(the list itself is unusable):
    error<TAB>WHY
    missing<TAB>PATH<TAB>REASON
    wrong-size<TAB>PATH<TAB>ACTUAL<TAB>EXPECTED
    summary<TAB>GOOD<TAB>TOTAL<TAB>UNCHECKED
"""

import json
import os
import re
import stat
import sys

SAFE_PATH_EXPECTED = (
    "a relative path of '/'-separated names, without '.', '..' or empty segments, "
    "'\\' or control characters"
)
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ListError(Exception):
    """The models list cannot be used; the message says where and why."""


def unsafe_path_reason(value):
    """Why value is not a safe relative path (the rule of src/lib/safe-path.ts), or None."""
    if value == "":
        return "it is empty"
    if value.startswith("/"):
        return "it is absolute"
    if _CONTROL.search(value):
        return "it contains a control character"
    if "\\" in value:
        return "it contains '\\'"
    segments = value.split("/")
    if ".." in segments:
        return "it has a '..' segment"
    if "." in segments:
        return "it has a '.' segment"
    if "" in segments:
        return "it has an empty segment"
    return None


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_list(text, where):
    """[{path, size|None, sha256|None}] from the list's JSON text; ListError otherwise."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ListError(f"{where} is not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(
        data.get("models"), list
    ):
        raise ListError(f"{where}: expected an object with version 1 and a models array")
    entries, seen = [], set()
    for index, item in enumerate(data["models"]):
        at = f"{where}: models[{index}]"
        if not isinstance(item, dict) or set(item) - {"path", "size", "sha256"}:
            raise ListError(f"{at}: expected an object with path, size and sha256 only")
        path, size, sha256 = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str):
            raise ListError(f"{at}.path: expected a string, got {json.dumps(path)}")
        reason = unsafe_path_reason(path)
        if reason:
            raise ListError(
                f"{at}.path {json.dumps(path)} is refused: {reason}; expected {SAFE_PATH_EXPECTED}"
            )
        if path in seen:
            raise ListError(f"{at}.path: duplicate path {json.dumps(path)}")
        seen.add(path)
        if size is not None and not _is_count(size):
            raise ListError(f"{at}.size: expected a byte count or null, got {json.dumps(size)}")
        if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
            raise ListError(
                f"{at}.sha256: expected 64 lowercase hex characters or null, got {json.dumps(sha256)}"
            )
        entries.append({"path": path, "size": size, "sha256": sha256})
    return entries


def load_list(path):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ListError(f"models list {path} cannot be read: {err.strerror or err}") from None
    return parse_list(text, f"models list {path}")


def check(entries, models_dir):
    """Stats each model under models_dir: what is missing, what has the wrong size, and which
    present models have no recorded size (only presence is checked for them)."""
    missing, wrong_size, unchecked = [], [], []
    for entry in entries:
        full = os.path.join(models_dir, entry["path"])
        try:
            info = os.stat(full)
        except OSError as err:
            reason = "no such file" if isinstance(err, FileNotFoundError) else (err.strerror or str(err))
            missing.append({"path": entry["path"], "reason": reason})
            continue
        if not stat.S_ISREG(info.st_mode):
            missing.append({"path": entry["path"], "reason": "not a regular file"})
        elif entry["size"] is None:
            unchecked.append(entry["path"])
        elif info.st_size != entry["size"]:
            wrong_size.append(
                {"path": entry["path"], "actual": info.st_size, "expected": entry["size"]}
            )
    return {
        "required": len(entries),
        "missing": missing,
        "wrong_size": wrong_size,
        "size_unchecked": unchecked,
    }


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="worker.py check-models")
    parser.add_argument("--list", required=True, help="models.json")
    parser.add_argument("--models-dir", required=True)
    args = parser.parse_args(argv)
    try:
        entries = load_list(args.list)
    except ListError as err:
        print(f"error\t{err}")
        return 2
    result = check(entries, args.models_dir)
    for item in result["missing"]:
        print(f"missing\t{item['path']}\t{item['reason']}")
    for item in result["wrong_size"]:
        print(f"wrong-size\t{item['path']}\t{item['actual']}\t{item['expected']}")
    bad = len(result["missing"]) + len(result["wrong_size"])
    print(f"summary\t{result['required'] - bad}\t{result['required']}\t{len(result['size_unchecked'])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

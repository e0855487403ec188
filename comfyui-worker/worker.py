"""The entrypoint's Python helpers (standard library only), as commands:

    python3 -B worker.py check-models --list models.json --models-dir /mnt/sfs/models
    python3 -B worker.py supervise --check-config
    python3 -B worker.py supervise -- python3 main.py --listen 0.0.0.0 --port 8188 ...

Run as a script so that comfyume_worker (beside it) is importable without PYTHONPATH, which would
otherwise be inherited by ComfyUI.
"""

import os
import sys

from comfyume_worker import models, supervisor


def main(argv):
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "check-models":
        return models.main(rest)
    if command == "supervise" and rest == ["--check-config"]:
        try:
            supervisor.config_from_env(os.environ)
        except supervisor.ConfigError as err:
            print(err, file=sys.stderr)
            return supervisor.EX_USAGE
        return 0
    if command == "supervise":
        return supervisor.main(rest)
    print("usage: worker.py check-models --list FILE --models-dir DIR | supervise [--check-config | -- COMMAND...]",
          file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

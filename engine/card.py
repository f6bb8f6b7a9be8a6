"""`python -m engine.card write RUN_DIR` / `push RUN_DIR REPO_ID [--private]`: a run's model card
(engine.child.model_card), written again from its latest evaluation, and its model folder uploaded
to the Hugging Face Hub. `hbt-tui push` runs it, so the parent never imports huggingface_hub.
An entry point: nothing imports it."""

import argparse
import sys

from engine.child.model_card import push, write_model_card
from engine.contract.errors import EXIT_USER_ERROR, UserError
from engine.contract.layout import RunFolder

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m engine.card")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write").add_argument("run_dir")
    upload = commands.add_parser("push")
    upload.add_argument("run_dir")
    upload.add_argument("repo_id")
    upload.add_argument("--private", action="store_true")
    args = parser.parse_args()
    try:
        folder = RunFolder(args.run_dir)
        if args.command == "write":
            print(write_model_card(folder) or f"run {folder.id} has no saved model")
        else:
            print(push(folder, args.repo_id, private=args.private))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)

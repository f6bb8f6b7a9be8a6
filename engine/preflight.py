"""`python -m engine.preflight < specs.json`: the child-side checks of a list of spec documents
(data, model, device, batches), one JSON verdict per spec on stdout. The parent runs it before
it creates any run folder. An entry point: nothing imports it."""

import json
import sys

from engine.child.preflight import check_documents

if __name__ == "__main__":
    print(json.dumps(check_documents(json.load(sys.stdin))))

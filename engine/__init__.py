"""Headless engine of hbt-tui: specs, data, training, evaluation, runner and store.

Never imports textual. The stdlib-only modules (spec, protocol, store, runner, errors,
data.catalog) are what the UI may import; everything else pulls in torch.
"""

PROTOCOL_VERSION = 1

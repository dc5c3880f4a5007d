"""Quantization with torchao PT2E (imported here once, quietly: see edgepack.quiet)."""
from edgepack.quiet import import_torchao

import_torchao()

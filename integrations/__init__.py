"""One module per intercepted library, installed as ``ioprofiler.integrations``."""

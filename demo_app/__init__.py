"""A small sharded marketplace that shows ioprofiler at work: ``python -m demo_app``."""

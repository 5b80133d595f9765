"""The reports' Markdown tables and figures: metrics.md, gap.md (and their
charts) per pipeline, and docs/results.md over all of them, each written once."""

//! Scenario files: one timed command per line (written by the lead; placeholder).

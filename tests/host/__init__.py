"""Test harnesses that drive the built plugin (see clap_host.py)."""

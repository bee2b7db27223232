"""Backends: each prints or runs an evaluation plan (``symdiff.plan``); numpy is the default."""

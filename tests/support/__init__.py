"""Shared helpers for the cross-module tests: the warren process runner and a raw AMQP frame client."""

"""Broker-model methods (queue.declare, basic.consume, ...) for the raw client in amqp_raw.py.

For the few tests that must send what pika refuses to send (a consumer tag reused on one channel). Written from
the 0-9-1 spec with struct like amqp_raw.py, and built only on its public encoders, so that module stays as is.
"""

from __future__ import annotations

import struct
from typing import Any

from support.amqp_raw import RawClient, encode_bits, encode_table, shortstr

QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_CONSUME = (60, 20)
BASIC_CONSUME_OK = (60, 21)


def queue_declare_args(queue: str, passive: bool = False, durable: bool = False, exclusive: bool = False,
                       auto_delete: bool = False, nowait: bool = False,
                       arguments: dict[str, Any] | None = None) -> bytes:
    return (struct.pack(">H", 0) + shortstr(queue) + encode_bits(passive, durable, exclusive, auto_delete, nowait)
            + encode_table(arguments or {}))


def basic_consume_args(queue: str, consumer_tag: str = "", no_local: bool = False, no_ack: bool = False,
                       exclusive: bool = False, nowait: bool = False,
                       arguments: dict[str, Any] | None = None) -> bytes:
    return (struct.pack(">H", 0) + shortstr(queue) + shortstr(consumer_tag)
            + encode_bits(no_local, no_ack, exclusive, nowait) + encode_table(arguments or {}))


def _shortstr_at(data: bytes, pos: int) -> tuple[str, int]:
    n = data[pos]
    return data[pos + 1:pos + 1 + n].decode("utf-8", "replace"), pos + 1 + n


def declare_queue(client: RawClient, channel: int, queue: str, **kwargs) -> dict[str, Any]:
    """queue.declare and wait for declare-ok; returns {'queue', 'message_count', 'consumer_count'}."""
    client.send_method(channel, QUEUE_DECLARE, queue_declare_args(queue, **kwargs))
    raw = client.expect_method(channel, QUEUE_DECLARE_OK)["raw"]
    name, pos = _shortstr_at(raw, 0)
    message_count, consumer_count = struct.unpack(">II", raw[pos:pos + 8])
    return {"queue": name, "message_count": message_count, "consumer_count": consumer_count}


def send_consume(client: RawClient, channel: int, queue: str, consumer_tag: str = "", **kwargs) -> None:
    client.send_method(channel, BASIC_CONSUME, basic_consume_args(queue, consumer_tag, **kwargs))


def consume(client: RawClient, channel: int, queue: str, consumer_tag: str = "", **kwargs) -> str:
    """basic.consume and wait for consume-ok (the queue must be empty, or a delivery may come first)."""
    send_consume(client, channel, queue, consumer_tag, **kwargs)
    raw = client.expect_method(channel, BASIC_CONSUME_OK)["raw"]
    return _shortstr_at(raw, 0)[0]
